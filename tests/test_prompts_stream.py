"""The streaming `prompts` stage against the in-memory one it replaced (`tests/prompts_oracle.py`).

Both run on the same input with the same params; the four outputs must be the same bytes. Inputs:
the embedded sample (with the repository's params), a few hundred real FLAN-format rows
(`tests/data/prompts_real`, real duplicates), and a generated source in both Hub layouts with
several files, planted duplicates (with other references: the smallest is kept) and faulty rows.
Small bucket sizes force many buckets, and two workers the process pool.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

import builders.prompts.buckets as prompt_buckets
import builders.prompts.recipe as recipe
from benchmarks.synthetic import synthetic_table, write_source
from builders.prompts.config import PromptsConfig
from builders.prompts.recipe import REMOVED_PROMPTS_SCHEMA, write_prompts
from builders.prompts.sampling import uniforms_at
from core.config import parse_section
from core.io import write_json, write_parquet
from core.schema import PROMPT_SCHEMA
from tests import prompts_oracle

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "tests" / "data" / "prompts_real"
OUTPUTS = ("prompts.parquet", "heldout.parquet", "removed.parquet", "stats.json")


def config(**over: object) -> PromptsConfig:
    """The repository's `prompts:` params with `over` applied (paths made absolute)."""
    data = yaml.safe_load((ROOT / "params.yaml").read_text())["prompts"]
    data.update(recipe=str(ROOT / data["recipe"]), system_messages=str(ROOT / data["system_messages"]))
    data["source"] = str(ROOT / data["source"])
    data.update(over)
    return parse_section(PromptsConfig, data, section="prompts")


def oracle_bytes(cfg: PromptsConfig, seed: int, out: Path) -> dict[str, bytes]:
    prompts, heldout, removed, stats = prompts_oracle.build_prompts(cfg, seed)
    write_parquet(prompts, out / "prompts.parquet", PROMPT_SCHEMA)
    write_parquet(heldout, out / "heldout.parquet", PROMPT_SCHEMA)
    write_parquet(removed, out / "removed.parquet", REMOVED_PROMPTS_SCHEMA)
    write_json(stats, out / "stats.json")
    return {name: (out / name).read_bytes() for name in OUTPUTS}


def stream_bytes(cfg: PromptsConfig, seed: int, out: Path) -> dict[str, bytes]:
    write_prompts(cfg, seed, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUTS)  # no spill left behind
    return {name: (out / name).read_bytes() for name in OUTPUTS}


def assert_same(cfg: PromptsConfig, seed: int, tmp_path: Path) -> dict[str, bytes]:
    expected = oracle_bytes(cfg, seed, tmp_path / "oracle")
    got = stream_bytes(cfg, seed, tmp_path / "stream")
    for name in OUTPUTS:
        assert got[name] == expected[name], name
    return got


@pytest.mark.parametrize(("workers", "bucket_bytes"), [(1, recipe.BUCKET_BYTES), (2, 2_000)])
def test_embedded_sample_gives_the_in_memory_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int, bucket_bytes: int
) -> None:
    monkeypatch.setattr(recipe, "BUCKET_BYTES", bucket_bytes)
    assert_same(config(workers=workers), 20231101, tmp_path)


@pytest.mark.parametrize(
    "over",
    [
        {"budget_scale": 1.0},  # more than the source holds: everything, with shortfalls
        {
            "budget_scale": 0.0003,
            "max_per_task": 9,
            "heldout_tasks": ["cot_qasc", "trec:1.0.0"],
            "heldout_per_task": 4,
            "exclude_tasks": {"cot": ["_ii$"]},
        },
    ],
)
def test_real_rows_give_the_in_memory_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, over: dict
) -> None:
    monkeypatch.setattr(recipe, "BUCKET_BYTES", 5_000)
    got = assert_same(config(source=str(REAL), workers=2, **over), 7, tmp_path)
    reasons = pq.read_table(pa.BufferReader(got["removed.parquet"])).column("reason").to_pylist()
    assert reasons.count("duplicate_id") >= 20  # real duplicate rows met


def _generated(root: Path, layout: str) -> Path:
    rng = np.random.default_rng(3)
    tables = {}
    for k, submix in enumerate(("cot", "niv2", "t0")):
        sizes = np.maximum(1, rng.pareto(1.2, 40) * 30).astype(int).tolist()
        table = synthetic_table(submix, sizes, seed=k, fs_share=0.3)
        twins = table.take(pa.array(rng.choice(table.num_rows, 60, replace=False)))
        twins = twins.set_column(1, "targets", pc.binary_join_element_wise(twins["targets"], "x", ""))
        empty = table.slice(0, 3).set_column(0, "inputs", pa.array(["  "] * 3))
        tables[submix] = pa.concat_tables([table, twins, empty])
    return write_source(root, tables, layout, shards=3)


@pytest.mark.parametrize("layout", ["dpi", "openorca"])
def test_generated_source_gives_the_in_memory_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    monkeypatch.setattr(recipe, "BUCKET_BYTES", 20_000)
    source = _generated(tmp_path / "src", layout)
    over = {
        "budget_scale": 0.0004,
        "heldout_tasks": ["niv2_task_0003", "t0_task_0001"],
        "heldout_per_task": 3,
    }
    got = assert_same(config(source=str(source), workers=2, **over), 11, tmp_path)
    stats = yaml.safe_load(got["stats.json"])
    assert stats["funnel"]["removed"]["duplicate_id"] >= 60
    assert stats["funnel"]["removed"]["empty_input"] == 9


def test_uniforms_at_equals_slices_of_the_stream() -> None:
    stream = np.random.default_rng(5).random(10_000)
    spans = [(0, 3), (3, 0), (10, 100), (5000, 1), (9000, 1000)]
    got = uniforms_at(np.random.default_rng(5), spans)
    assert np.array_equal(got, np.concatenate([stream[s : s + n] for s, n in spans]))
    with pytest.raises(ValueError, match="increasing"):
        uniforms_at(np.random.default_rng(5), [(10, 5), (12, 1)])


def test_buckets_are_planned_by_size(tmp_path: Path) -> None:
    """Parts hashed unevenly are placed largest first into the lightest bucket: every part once,
    no bucket above the mean plus the largest part, the plan the same on every call."""
    rng = np.random.default_rng(7)
    roots = []
    for f in range(3):
        root = tmp_path / f"f{f}"
        root.mkdir()
        roots.append(str(root))
        for p in range(12):
            n = int(rng.integers(1, 400)) * (8 if p == 3 else 1)
            table = pa.table({"question": [f"row {f} {p} {i} " + "x" * 50 for i in range(n)]})
            pq.write_table(table, root / f"p{p:05d}.parquet")
    sizes: dict[str, int] = {}
    for root in roots:
        for file in Path(root).glob("*.parquet"):
            meta = pq.ParquetFile(file).metadata
            sizes[file.stem] = sizes.get(file.stem, 0) + sum(
                meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)
            )
    target = -(-sum(sizes.values()) // 4)  # ceil: four buckets
    jobs = prompt_buckets.plan_buckets(tuple(roots), target)
    assert len(jobs) == 4
    assert sorted(p for j in jobs for p in j.parts) == sorted(sizes)
    loads = [sum(sizes[p] for p in j.parts) for j in jobs]
    assert max(loads) <= sum(sizes.values()) / 4 + max(sizes.values())
    assert jobs == prompt_buckets.plan_buckets(tuple(roots), target)
    rows = sum(j.read(["question"]).num_rows for j in jobs)
    assert rows == sum(pq.ParquetFile(f).metadata.num_rows for r in roots for f in Path(r).glob("*.parquet"))


@pytest.mark.parametrize("name", ["niv1", "flan"])
def test_real_dev_rows_give_the_in_memory_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """Real rows of ../shared/data/real's niv1_dev (NIV2) and flan_dev (CoT with inversions, TREC),
    the committed samples, written in the DPI layout: the same bytes as the in-memory stage."""
    from benchmarks.dedup_stages import stage_ids, write_source
    from benchmarks.real_data import load_real, plant_edits

    monkeypatch.setattr(recipe, "BUCKET_BYTES", 20_000)
    df = stage_ids(plant_edits(load_real(ROOT / "tests/data/dedup" / f"{name}_dev_sample.jsonl"), edits=0))
    source = write_source(df, tmp_path / "src")
    for k, over in enumerate([{"budget_scale": 1.0}, {"budget_scale": 0.0005, "max_per_task": 20}]):
        assert_same(config(source=str(source), workers=2, heldout_tasks=[], **over), 7, tmp_path / str(k))
