"""Tests of the `prompts` stage: FLAN reader, Orca sampling, system messages, bad input."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from benchmarks.synthetic import synthetic_table, write_source
from builders.prompts.__main__ import main
from builders.prompts.config import PromptsConfig
from builders.prompts.flan_source import SourceError, discover, resolve_source
from builders.prompts.recipe import build_prompts
from builders.prompts.sampling import allocate
from builders.prompts.system_messages import assign_system_messages, load_system_messages
from core.config import ParamsError, load_section, parse_section
from core.errors import InputError
from tests.prompts_oracle import read_submix, stratified_sample

ROOT = Path(__file__).resolve().parents[1]
MESSAGES = ROOT / "builders" / "prompts" / "system_messages.yaml"
WEIGHTS = {
    "cot": {6: 1, 11: 1, 16: 1},
    "niv2": {1: 1, 2: 1, 5: 1, 7: 1, 9: 1, 12: 1, 13: 1, 14: 1, 15: 1},
    "t0": {1: 1, 2: 1, 3: 1, 5: 1, 7: 1},
    "flan2021": {3: 1, 4: 1, 7: 1, 8: 1, 10: 1},
    "dialog": {1: 1},
}


def make_cfg(source: Path, tmp_path: Path, **over) -> PromptsConfig:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"budgets": over.pop("recipe_budgets", {"cot": 10, "t0": 10})}))
    data = {
        "source": str(source),
        "recipe": str(recipe),
        "budget_scale": 1.0,
        "system_messages": str(MESSAGES),
        "system_message_weights": WEIGHTS,
        "exclude_tasks": {},
        "workers": 1,
        **over,
    }
    return parse_section(PromptsConfig, data, section="prompts")


@pytest.fixture
def source(tmp_path: Path) -> Path:
    tables = {
        "cot": synthetic_table("cot", [40, 40, 40, 5], seed=1, fs_share=0.3),
        "t0": synthetic_table("t0", [60, 60, 3], seed=2, fs_share=0.3),
        "niv2": synthetic_table("niv2", [30] * 6, seed=3),
    }
    return write_source(tmp_path / "flan", tables, "dpi", shards=2)


def test_budgets_met_exactly_when_sources_suffice(source: Path, tmp_path: Path) -> None:
    cfg = make_cfg(source, tmp_path, recipe_budgets={"cot": 50, "t0": 40, "niv2": 70})
    prompts, _, _, stats = build_prompts(cfg, seed=3)
    counts = dict(prompts.group_by("submix").len().iter_rows())
    assert counts == {"cot": 50, "t0": 40, "niv2": 70}
    assert stats["shortfall"] == {"cot": 0, "t0": 0, "niv2": 0}
    funnel = stats["funnel"]
    assert funnel["rows_in"] == funnel["rows_out"] + sum(funnel["removed"].values())


def test_budget_larger_than_source_gives_everything_and_shortfall(source: Path, tmp_path: Path) -> None:
    cfg = make_cfg(source, tmp_path, recipe_budgets={"cot": 10_000})
    prompts, _, _, stats = build_prompts(cfg, seed=3)
    available = stats["per_submix"]["cot"]["available"]
    assert prompts.height == available
    assert stats["shortfall"]["cot"] == 10_000 - available


def test_zero_shot_only_by_default(source: Path, tmp_path: Path) -> None:
    prompts, _, _, stats = build_prompts(make_cfg(source, tmp_path), seed=1)
    assert set(prompts["template_type"]) <= {"zs_opt", "zs_noopt"}
    assert stats["funnel"]["removed"]["template_type"] > 0


def test_stratification_no_task_starves(tmp_path: Path) -> None:
    # one huge task and three tiny ones: the tiny ones are drawn dry before the big one fills the rest
    root = write_source(tmp_path / "s", {"t0": synthetic_table("t0", [5000, 4, 4, 4], seed=5)})
    cfg = make_cfg(root, tmp_path, recipe_budgets={"t0": 100})
    prompts, _, _, _ = build_prompts(cfg, seed=9)
    per_task = dict(prompts.group_by("task_name").len().iter_rows())
    assert len(per_task) == 4
    assert sorted(per_task.values()) == [4, 4, 4, 88]


def test_allocation_is_uniform_over_tasks() -> None:
    rng = np.random.default_rng(0)
    alloc = allocate(np.array([10_000] * 8), 80_000 // 10, rng)
    assert alloc.sum() == 8000
    assert np.all(np.abs(alloc - 1000) < 5 * np.sqrt(1000))


def test_a_larger_budget_keeps_every_prompt_a_smaller_one_chose(source: Path, tmp_path: Path) -> None:
    """Raising a budget only adds prompts, each with the system message it had: its cached
    generation stays valid, so the teacher is sent only the new ones."""
    chosen, heldouts = [], []
    for scale in (0.3, 0.6, 1.0):
        cfg = make_cfg(source, tmp_path, recipe_budgets={"cot": 50, "t0": 40, "niv2": 70}, budget_scale=scale)
        prompts, heldout, _, _ = build_prompts(cfg, seed=5)
        chosen.append(prompts)
        heldouts.append(heldout)
    assert heldouts[0].equals(heldouts[1]) and heldouts[1].equals(heldouts[2])
    for small, large in itertools.pairwise(chosen):
        assert small.height < large.height
        assert small.join(large, on="id", how="anti").height == 0
        assert large.filter(pl.col("id").is_in(small["id"].implode())).equals(small)


def test_allocation_is_nested_in_the_budget() -> None:
    counts = np.array([5, 100, 3, 50, 1000, 1])
    allocs = [allocate(counts, b, np.random.default_rng(7)) for b in (1, 10, 57, 158, 1000, 1159, 5000)]
    assert [int(a.sum()) for a in allocs] == [1, 10, 57, 158, 1000, 1159, 1159]
    for small, large in itertools.pairwise(allocs):
        assert (small <= large).all()
    assert (allocs[-1] == counts).all()


def test_max_per_task_caps_each_task(source: Path, tmp_path: Path) -> None:
    cfg = make_cfg(source, tmp_path, recipe_budgets={"niv2": 1000}, max_per_task=7)
    prompts, _, _, _ = build_prompts(cfg, seed=1)
    assert prompts.group_by("task_name").len()["len"].max() == 7


def test_exclusion_patterns(tmp_path: Path) -> None:
    table = synthetic_table("t0", [20, 20], seed=1)
    names = [
        "bigbench_logical_deduction" if n.endswith("0000") else n for n in table["task_name"].to_pylist()
    ]
    table = table.set_column(3, "task_name", pa.array(names, pa.string()))
    root = write_source(tmp_path / "s", {"t0": table})
    cfg = make_cfg(root, tmp_path, exclude_tasks={"t0": ["(?i)bigbench"]})
    prompts, _, removed, _ = build_prompts(cfg, seed=1)
    assert not prompts["task_name"].str.contains("bigbench").any()
    excluded = removed.filter(pl.col("reason") == "excluded_task")
    assert excluded.height > 0 and set(excluded["task_name"]) == {"bigbench_logical_deduction"}


def test_heldout_tasks_are_set_aside(source: Path, tmp_path: Path) -> None:
    cfg = make_cfg(
        source, tmp_path, recipe_budgets={"cot": 10_000}, heldout_tasks=["cot_task_0001"], heldout_per_task=5
    )
    prompts, heldout, _, stats = build_prompts(cfg, seed=1)
    assert "cot_task_0001" not in set(prompts["task_name"])
    assert set(heldout["task_name"]) == {"cot_task_0001"} and heldout.height == 5
    assert stats["funnel"]["rows_in"] == stats["funnel"]["rows_out"] + sum(
        stats["funnel"]["removed"].values()
    )


def test_deterministic_bytes(source: Path, tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    cfg = make_cfg(source, tmp_path, recipe_budgets={"cot": 30, "t0": 30})
    params.write_text(yaml.safe_dump({"base": {"seed": 11}, "prompts": cfg.model_dump()}))
    digests = []
    for run in ("a", "b"):
        assert main(["--params", str(params), "--out", str(tmp_path / run)]) == 0
        digests.append(
            {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in (tmp_path / run).iterdir()}
        )
    assert digests[0] == digests[1]
    assert set(digests[0]) == {"prompts.parquet", "heldout.parquet", "removed.parquet", "stats.json"}


def test_seed_changes_the_sample(source: Path, tmp_path: Path) -> None:
    cfg = make_cfg(source, tmp_path, recipe_budgets={"cot": 30})
    a, _, _, _ = build_prompts(cfg, seed=1)
    b, _, _, _ = build_prompts(cfg, seed=2)
    assert set(a["id"]) != set(b["id"])


def test_openorca_layout_gives_the_same_prompts(tmp_path: Path) -> None:
    tables = {"cot": synthetic_table("cot", [30, 30], seed=4, fs_share=0.5)}
    dpi = write_source(tmp_path / "dpi", tables, "dpi")
    orca = write_source(tmp_path / "orca", tables, "openorca")
    assert discover(orca, ["cot"]).layout == "openorca"
    a, _, _, _ = build_prompts(make_cfg(dpi, tmp_path, recipe_budgets={"cot": 25}), seed=1)
    b, _, _, _ = build_prompts(make_cfg(orca, tmp_path, recipe_budgets={"cot": 25}), seed=1)
    assert a.equals(b)


def test_hub_id_resolves_through_snapshot_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Hub path, offline: huggingface_hub's own cache layout stands in for the download."""
    import huggingface_hub.constants as hc

    cache = tmp_path / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = cache / "datasets--Open-Orca--FLAN"
    write_source(
        repo_dir / "snapshots" / commit, {"cot": synthetic_table("cot", [10, 10], seed=1)}, "openorca"
    )
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    found = resolve_source("Open-Orca/FLAN", ["cot"], ["zs_opt", "zs_noopt"])
    assert found.layout == "openorca" and found.revision == {"cot": commit}
    assert len(found.files["cot"]) >= 1


def test_system_messages_follow_weights_and_mc_rule() -> None:
    messages = load_system_messages(MESSAGES)
    n = 60_000
    rng = np.random.default_rng(0)
    df = (
        pl.DataFrame({"submix": ["flan2021"] * n, "has_options": rng.random(n) < 0.5})
        .with_row_index("id")
        .with_columns(pl.col("id").cast(pl.String))
    )
    out = assign_system_messages(df, WEIGHTS, messages, 1)
    no_opt = out.filter(~pl.col("has_options"))
    assert not no_opt["system_prompt_id"].is_in([8, 10]).any()
    with_opt = out.filter(pl.col("has_options"))
    counts = dict(with_opt.group_by("system_prompt_id").len().iter_rows())
    expected = with_opt.height / 5
    for k in (3, 4, 7, 8, 10):
        assert abs(counts[k] - expected) < 5 * np.sqrt(expected), (k, counts)
    counts = dict(no_opt.group_by("system_prompt_id").len().iter_rows())
    expected = no_opt.height / 3
    for k in (3, 4, 7):
        assert abs(counts[k] - expected) < 5 * np.sqrt(expected), (k, counts)


def test_unequal_weights_are_followed() -> None:
    messages = load_system_messages(MESSAGES)
    n = 40_000
    df = (
        pl.DataFrame({"submix": ["cot"] * n, "has_options": [False] * n})
        .with_row_index("id")
        .with_columns(pl.col("id").cast(pl.String))
    )
    out = assign_system_messages(df, {"cot": {6: 3, 11: 1}}, messages, 2)
    share = (out["system_prompt_id"] == 6).mean()
    assert abs(share - 0.75) < 5 * np.sqrt(0.75 * 0.25 / n)


# --- bad input -------------------------------------------------------------------------------


def _write(path: Path, table: pa.Table) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    table = synthetic_table("cot", [5]).drop(["task_name"])
    f = _write(tmp_path / "s" / "cot_submix_original" / "data" / "x.parquet", table)
    with pytest.raises(SourceError, match=r"x\.parquet: missing column 'task_name'"):
        build_prompts(make_cfg(tmp_path / "s", tmp_path, workers=2), seed=1)  # raised in a worker
    assert f.exists()


def test_wrong_type_names_file_and_column(tmp_path: Path) -> None:
    table = synthetic_table("cot", [5])
    table = table.set_column(1, "targets", pa.array(range(5), pa.int64()))
    _write(tmp_path / "s" / "cot_submix_original" / "data" / "y.parquet", table)
    with pytest.raises(SourceError, match=r"y\.parquet: column 'targets' must be text, found int64"):
        build_prompts(make_cfg(tmp_path / "s", tmp_path), seed=1)


def test_bad_rows_go_to_removed_with_reasons(tmp_path: Path) -> None:
    inputs = pa.array([b"fine question?", b"   ", b"\xff\xfe broken", b"another fine one"], pa.binary())
    table = pa.table(
        {
            "inputs": inputs,
            "targets": pa.array(["a", "b", "c", None]),
            "task_source": pa.array(["CoT"] * 4),
            "task_name": pa.array(["cot_gsm8k"] * 4),
            "template_type": pa.array(["zs_noopt"] * 4),
        }
    )
    _write(tmp_path / "s" / "cot_submix_original" / "data" / "z.parquet", table)
    cfg = make_cfg(tmp_path / "s", tmp_path, recipe_budgets={"cot": 10})
    prompts, _, removed, stats = build_prompts(cfg, seed=1)
    assert prompts["question"].to_list() == ["fine question?"]
    reasons = dict(zip(removed["reason"], removed["detail"], strict=True))
    assert set(reasons) == {"empty_input", "invalid_utf8", "null_field"}
    assert reasons["invalid_utf8"].endswith("z.parquet: column inputs")
    assert reasons["null_field"].endswith("column targets")
    assert stats["funnel"]["removed"]["invalid_utf8"] == 1


def test_not_parquet_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "s" / "cot_submix_original" / "data" / "bad.parquet"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match=r"bad\.parquet: unreadable Parquet file \(footer\)"):
        build_prompts(make_cfg(tmp_path / "s", tmp_path), seed=1)


def test_missing_or_empty_source_folder(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="FLAN source folder not found"):
        discover(tmp_path / "nope", ["cot"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no Parquet files"):
        discover(tmp_path / "empty", ["cot"])


def test_bad_params_name_the_key(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    good = {"source": "x", "recipe": "r", "system_messages": "m", "system_message_weights": WEIGHTS}
    params.write_text(yaml.safe_dump({"prompts": {**good, "budjets": {}}}))
    with pytest.raises(ParamsError, match=r"prompts\.budjets: unknown key"):
        load_section(PromptsConfig, params, "prompts")
    params.write_text(yaml.safe_dump({"prompts": {**good, "template_types": ["zero_shot"]}}))
    with pytest.raises(ParamsError, match=r"prompts\.template_types\.0"):
        load_section(PromptsConfig, params, "prompts")
    params.write_text(yaml.safe_dump({"prompts": {**good, "exclude_tasks": {"t0": ["("]}}}))
    with pytest.raises(ParamsError, match="invalid regular expression"):
        load_section(PromptsConfig, params, "prompts")
    params.write_text(yaml.safe_dump({"prompts": {**good, "budgets": {"cot": -1}}}))
    with pytest.raises(ParamsError, match="budgets must be >= 0"):
        load_section(PromptsConfig, params, "prompts")


def test_unknown_system_message_id(source: Path, tmp_path: Path) -> None:
    cfg = make_cfg(source, tmp_path, system_message_weights={**WEIGHTS, "cot": {99: 1}})
    with pytest.raises(ParamsError, match=r"system_message_weights\.cot: unknown message ids \[99\]"):
        build_prompts(cfg, seed=1)


def test_mc_only_weights_alone_are_rejected(source: Path, tmp_path: Path) -> None:
    cfg = make_cfg(source, tmp_path, system_message_weights={**WEIGHTS, "cot": {8: 1}})
    with pytest.raises(ParamsError, match="not multiple-choice-only"):
        build_prompts(cfg, seed=1)


def test_stratified_sample_empty() -> None:
    df = pl.DataFrame(schema={"id": pl.String, "task_name": pl.String})
    assert stratified_sample(df, 10, np.random.default_rng(0)).height == 0


def test_embedded_sample_meets_its_contract() -> None:
    files = discover(ROOT / "sample" / "flan", ["cot", "niv2", "t0", "flan2021", "dialog"])
    frames = [read_submix(files, s, ["zs_opt", "zs_noopt", "fs_opt", "fs_noopt"])[0] for s in files.files]
    df = pl.concat(frames)
    assert df.height >= 400
    assert set(df["submix"]) == {"cot", "niv2", "t0", "flan2021", "dialog"}
    assert {"zs_opt", "zs_noopt", "fs_opt", "fs_noopt"} <= set(df["template_type"])
    per = dict(df.group_by("submix").agg(pl.col("task_name").n_unique()).iter_rows())
    # FLAN's dialog submix has four tasks in all (wiki_dialog, qrecc and their _ii inversions)
    assert all(n >= 5 for s, n in per.items() if s != "dialog") and per["dialog"] == 4
    assert df["inputs"].str.contains("OPTIONS:").sum() > 50


def test_sample_generator_rebuilds_the_committed_bytes() -> None:
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "make_sample.py"), d], check=True, capture_output=True
        )
        for f in sorted((ROOT / "sample" / "flan").rglob("*.parquet")):
            rel = f.relative_to(ROOT / "sample" / "flan")
            assert (Path(d) / rel).read_bytes() == f.read_bytes(), rel
