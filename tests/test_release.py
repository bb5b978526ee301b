"""The `release` stage: Hub-layout folder, real `load_dataset`, the card and its funnel."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from datasets import load_dataset
from huggingface_hub import DatasetCard, DatasetCardData

import cards.shards as shards_module
import core.io.parquet as parquet_module
from cards.card import release_license
from cards.funnel import FunnelError, parse_funnel
from cards.inputs import ReleaseInputError
from cards.release import main
from core.contracts import ReleaseLicense
from core.io import file_md5

GOLDEN = Path(__file__).parent / "data" / "release"
PARAMS = {
    "release": {
        "pretty_name": "Test release",
        "language": ["en"],
        "task_categories": ["text-generation"],
        "tags": ["orca", "test"],
        "source_datasets": ["DataProvenanceInitiative/cot_submix_original"],
        "shard_max_bytes": 500_000_000,
        "extra_limitations": ["The teachers here are tiny random models: their responses are noise."],
    },
    "publish": {"repo_id": "org/name", "version": "1.0.0", "private": False, "enabled": False},
}


def copy_inputs(dst: Path) -> Path:
    """The golden inputs under `dst`, plus a params file."""
    shutil.copytree(GOLDEN, dst, ignore=shutil.ignore_patterns("*.py"))
    (dst / "params.yaml").write_text(yaml.safe_dump(PARAMS), encoding="utf-8")
    return dst


def argv(inp: Path, out: Path, **extra: str) -> list[str]:
    args = {
        "--params": inp / "params.yaml",
        "--traces": inp / "traces.parquet",
        "--traces-stats": inp / "traces_stats.json",
        "--traces-meta": inp / "meta",
        "--prompts-stats": inp / "prompts_stats.json",
        "--heldout": inp / "heldout.parquet",
        "--license-stats": inp / "license_stats.json",
        "--license-summary": inp / "license_summary.json",
        "--dedup-stats": inp / "dedup_stats.json",
        "--verify-stats": inp / "verify_stats.json",
        "--out": out,
        **extra,
    }
    return [str(x) for kv in args.items() for x in kv]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("release")
    inp = copy_inputs(root / "inputs")
    out = root / "release"
    assert main(argv(inp, out)) == 0
    return inp, out


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_layout_is_a_hub_dataset_repo(built: tuple[Path, Path]) -> None:
    _, out = built
    assert sorted(_files(out)) == [
        "README.md",
        "data/default/train-00000-of-00001.parquet",
        "data/heldout/test-00000-of-00001.parquet",
        "data/large/train-00000-of-00001.parquet",
        "data/small/train-00000-of-00001.parquet",
        "funnel.png",
    ]
    assert (out / "funnel.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_load_dataset_configs(built: tuple[Path, Path], tmp_path: Path) -> None:
    inp, out = built
    traces = pl.read_parquet(inp / "traces.parquet")
    schema = pq.read_schema(inp / "traces.parquet")
    cache = str(tmp_path / "cache")
    default = load_dataset(str(out), cache_dir=cache)
    assert list(default) == ["train"]
    assert default["train"].num_rows == traces.height == 21
    assert default["train"].column_names == schema.names
    assert {"answer_kind", "answer_check", "extracted_answer"} <= set(default["train"].column_names)
    assert default["train"]["answer_check"] == traces.sort("id", "teacher")["answer_check"].to_list()
    assert default["train"].features["system_prompt_id"].dtype == "int32"
    assert default["train"].features["has_options"].dtype == "bool"
    assert list(default["train"]["id"]) == traces.sort("id", "teacher")["id"].to_list()
    for teacher in ("small", "large"):
        ds = load_dataset(str(out), teacher, split="train", cache_dir=cache)
        expected = traces.filter(pl.col("teacher") == teacher)
        assert ds.num_rows == expected.height
        assert set(ds["teacher"]) == {teacher}
    heldout = load_dataset(str(out), "heldout", split="test", cache_dir=cache)
    assert heldout.num_rows == pl.read_parquet(inp / "heldout.parquet").height == 4
    assert heldout.column_names == pq.read_schema(inp / "heldout.parquet").names


def test_card_metadata_round_trips(built: tuple[Path, Path]) -> None:
    _, out = built
    text = (out / "README.md").read_text(encoding="utf-8")
    card = DatasetCard(text)
    assert str(card) == text  # parse and dump give the same bytes
    data = card.data.to_dict()
    again = DatasetCardData(**data).to_dict()
    assert again == data
    assert data["license"] == "other"
    assert data["license_name"] == "mixed"
    assert "cc-by-sa-4.0" in data["license_details"]
    assert data["size_categories"] == ["n<1K"]
    assert data["pretty_name"] == "Test release"
    assert [c["config_name"] for c in data["configs"]] == ["default", "large", "small", "heldout"]
    infos = {i["config_name"]: i for i in data["dataset_info"]}
    assert infos["default"]["splits"][0]["num_examples"] == 21
    assert infos["small"]["splits"][0]["num_examples"] == 12
    assert infos["large"]["splits"][0]["num_examples"] == 9
    assert infos["heldout"]["splits"] == [{"name": "test", "num_bytes": infos["heldout"]["dataset_size"],
                                           "num_examples": 4}]  # fmt: skip
    assert {"name": "response", "dtype": "string"} in infos["default"]["features"]


def _numbers(obj: Any) -> list[int | float]:
    if isinstance(obj, dict):
        return [n for v in obj.values() for n in _numbers(v)]
    if isinstance(obj, list):
        return [n for v in obj for n in _numbers(v)]
    if isinstance(obj, bool):
        return []
    return [obj] if isinstance(obj, int | float) else []


def test_card_names_every_number_and_funnel_adds_up(built: tuple[Path, Path]) -> None:
    inp, out = built
    text = (out / "README.md").read_text(encoding="utf-8")
    for stage in ("prompts", "license", "dedup", "traces", "verify"):
        stats = json.loads((inp / f"{stage}_stats.json").read_text())
        f = stats["funnel"]
        assert f["rows_in"] == f["rows_out"] + sum(f["removed"].values()), stage
        removed = sum(f["removed"].values())
        row = f"| {stage} | {f['rows_in']:,} | {f['rows_out']:,} | {removed:,} |"
        assert row in text, row
        for reason, n in f["removed"].items():
            if n:
                assert f"{reason}: {n:,}" in text
        for n in _numbers(stats):
            assert re.search(rf"(?<![\d.]){re.escape(str(n))}(?![\d])", text), (stage, n)
    for teacher in ("small", "large"):
        meta = json.loads((inp / "meta" / f"{teacher}.json").read_text())
        assert meta["model"] in text
        for n in _numbers(meta):
            assert str(n) in text
    summary = json.loads((inp / "license_summary.json").read_text())
    for a in summary["attributions"]:
        assert f"| {a['dataset']} | {a['license']} | {a['url']} |" in text
    assert "![Rows in and out of every stage](funnel.png)" in text
    assert 'load_dataset("org/name", revision="v1.0.0")' in text
    assert "Gudibande" in text and "2306.02707" in text and "2301.13688" in text and "2310.16787" in text
    assert "tiny random models" in text
    assert "dvc repro eval" in text and "max_new_tokens" not in text  # no eval params in the card
    # The budgets and the actual per-submix counts.
    assert "| cot | 15 | 4 | 11 | 1 | 3 |" in text


def test_release_bytes_are_deterministic(built: tuple[Path, Path], tmp_path: Path) -> None:
    inp, out = built
    again = tmp_path / "again"
    assert main(argv(inp, again)) == 0
    assert _files(again) == _files(out)


def test_shards_split_by_size_and_load_in_order(built: tuple[Path, Path], tmp_path: Path) -> None:
    inp, _ = built
    params = yaml.safe_load((inp / "params.yaml").read_text())
    params["release"]["shard_max_bytes"] = 2000
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(params))
    out = tmp_path / "release"
    assert main([*argv(inp, out), "--params", str(p)]) == 0
    shards = sorted((out / "data" / "default").glob("*.parquet"))
    assert len(shards) > 1
    assert all(re.fullmatch(rf"train-\d{{5}}-of-{len(shards):05d}\.parquet", s.name) for s in shards)
    ds = load_dataset(str(out), split="train", cache_dir=str(tmp_path / "cache"))
    traces = pl.read_parquet(inp / "traces.parquet").sort("id", "teacher")
    assert list(ds["id"]) == traces["id"].to_list()
    assert list(ds["teacher"]) == traces["teacher"].to_list()


def test_eval_params_leave_the_card_unchanged(built: tuple[Path, Path], tmp_path: Path) -> None:
    _inp, out = built
    other = copy_inputs(tmp_path / "inputs")
    (other / "params.yaml").write_text(yaml.safe_dump({**PARAMS, "eval": {"max_new_tokens": 7}}))
    again = tmp_path / "release"
    assert main(argv(other, again)) == 0
    assert (again / "README.md").read_text() == (out / "README.md").read_text()


def test_bad_funnel_fails_naming_the_file(built: tuple[Path, Path], tmp_path: Path) -> None:
    _inp, _ = built
    bad = copy_inputs(tmp_path / "inputs")
    stats = json.loads((bad / "dedup_stats.json").read_text())
    stats["funnel"]["rows_out"] += 1
    (bad / "dedup_stats.json").write_text(json.dumps(stats))
    with pytest.raises(FunnelError, match=r"dedup_stats\.json: funnel does not add up"):
        parse_funnel(stats, str(bad / "dedup_stats.json"))
    out = tmp_path / "release"
    assert main(argv(bad, out)) == 2
    assert not out.exists()  # no partial output


def _drop_terms_of_large(inputs: Path) -> None:
    summary = json.loads((inputs / "license_summary.json").read_text())
    del summary["teachers"]["large"]
    (inputs / "license_summary.json").write_text(json.dumps(summary))


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: (d / "meta" / "large.json").unlink(), "large.json: file not found"),
        (lambda d: (d / "prompts_stats.json").write_text("{}"), "missing 'funnel' block"),
        (lambda d: (d / "license_summary.json").write_text("{}"), "license_summary.json: registry: Field"),
        (
            _drop_terms_of_large,
            "teachers ['large'] have traces but no terms of use; add license.teachers.large",
        ),
    ],
)
def test_bad_inputs_fail_clearly(
    tmp_path: Path, mutate: Any, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    inp = copy_inputs(tmp_path / "inputs")
    mutate(inp)
    out = tmp_path / "release"
    assert main(argv(inp, out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("release: ") and expected in err[0]
    assert not out.exists()


def _rewrite_traces(inputs: Path, case: str, row_group_size: int) -> None:
    """Break the trace table at row 3 (rows 2 and 3 swapped, row 2 repeated, a null id)."""
    table = pq.read_table(inputs / "traces.parquet")
    order = list(range(table.num_rows))
    if case == "unsorted":
        order[2], order[3] = 3, 2
    elif case == "duplicate":
        order.insert(3, 2)
    table = table.take(order)
    if case == "null id":
        ids = table.column("id").to_pylist()
        schema = table.schema.set(0, table.schema.field("id").with_nullable(True))
        table = table.cast(schema).set_column(0, "id", pa.array([*ids[:3], None, *ids[4:]]))
    pq.write_table(table, inputs / "traces.parquet", row_group_size=row_group_size)


@pytest.mark.parametrize("row_group_size", [3, 64])  # row 3 first in its row group, or not
@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("unsorted", "rows not sorted by (id, teacher) at row 3"),
        ("duplicate", "duplicate (id, teacher) at row 3"),
        ("null id", "column 'id' has nulls (row 3)"),
    ],
)
def test_trace_table_must_be_sorted_and_unique(
    tmp_path: Path, case: str, expected: str, row_group_size: int, capsys: pytest.CaptureFixture[str]
) -> None:
    inp = copy_inputs(tmp_path / "inputs")
    _rewrite_traces(inp, case, row_group_size)
    out = tmp_path / "release"
    assert main(argv(inp, out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0]] and err[0].startswith(f"release: {inp / 'traces.parquet'}: {expected}")
    assert not out.exists()


def test_streamed_shards_over_many_row_groups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small row groups in and out, batches across them, several shards: the rows are the input's,
    and the bytes depend on the rows alone, not on the input's row groups."""
    monkeypatch.setattr(parquet_module, "BATCH_ROWS", 3)
    monkeypatch.setattr(shards_module, "ROW_GROUP_ROWS", 2)
    releases = []
    for row_group_size in (5, 64):
        inp = copy_inputs(tmp_path / f"inputs{row_group_size}")
        params = yaml.safe_load((inp / "params.yaml").read_text())
        params["release"]["shard_max_bytes"] = 2500
        (inp / "params.yaml").write_text(yaml.safe_dump(params))
        pq.write_table(
            pq.read_table(inp / "traces.parquet"), inp / "traces.parquet", row_group_size=row_group_size
        )
        releases.append(tmp_path / f"release{row_group_size}")
        assert main(argv(inp, releases[-1])) == 0
    out = releases[0]

    def rows_only(files: dict[str, bytes]) -> dict[str, bytes]:  # the card digests the input's bytes
        card = [line for line in files["README.md"].splitlines() if b"traces.parquet" not in line]
        return {**files, "README.md": b"\n".join(line for line in card if b"that table's JSON" not in line)}

    assert rows_only(_files(out)) == rows_only(_files(releases[1]))
    traces = pl.read_parquet(GOLDEN / "traces.parquet")
    cache = str(tmp_path / "cache")
    for config, expected in [
        ("default", traces),
        ("small", traces.filter(pl.col("teacher") == "small")),
        ("large", traces.filter(pl.col("teacher") == "large")),
    ]:
        shards = sorted((out / "data" / config).glob("*.parquet"))
        assert len(shards) > 1
        assert max(pq.ParquetFile(s).metadata.num_row_groups for s in shards) > 1
        ds = load_dataset(str(out), config, split="train", cache_dir=cache)
        assert ds.to_list() == expected.to_dicts()


def test_release_license_forms() -> None:
    def lic(main_id: str, listed: list[str]) -> ReleaseLicense:
        return ReleaseLicense(license=main_id, licenses=listed, use="commercial")

    assert release_license(lic("Apache-2.0", ["Apache-2.0"])) == ("apache-2.0", ["apache-2.0"])
    assert release_license(lic("other", ["mit", "cc-by-4.0"])) == ("other", ["cc-by-4.0", "mit"])
    assert release_license(lic("other", ["mit", "mit"])) == ("mit", ["mit"])
    with pytest.raises(ReleaseInputError, match="no license"):
        release_license(lic("other", []))


def test_card_digests_its_declared_inputs_and_nothing_of_the_working_tree(
    built: tuple[Path, Path], tmp_path: Path
) -> None:
    """The card lists the md5 of each input as dvc.lock does, and no git commit: built from a copy of
    the inputs inside a git checkout, it is byte-identical."""
    inp, out = built
    card = (out / "README.md").read_text()
    for name in ("traces.parquet", "heldout.parquet", "meta/large.json", "verify_stats.json"):
        assert f"| `{name}` | `{file_md5(inp / name)}` |" in card
    assert "git checkout <commit>\n" in card and "<!-- provenance -->" in card
    copy = copy_inputs(tmp_path / "checkout" / "inputs")
    run = {"cwd": tmp_path / "checkout", "check": True, "capture_output": True}
    subprocess.run(["git", "init", "-q"], **run)
    subprocess.run(["git", "add", "."], **run)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x"], **run)
    assert main(argv(copy, tmp_path / "again")) == 0
    assert (tmp_path / "again" / "README.md").read_text() == card


def test_card_ledger_prices_the_released_rows(tmp_path: Path) -> None:
    inp = copy_inputs(tmp_path / "inputs")
    meta = json.loads((inp / "meta" / "large.json").read_text())
    price = {"input": 2.5, "output": 10.0, "batch_input": 1.25, "batch_output": 5.0}
    (inp / "meta" / "large.json").write_text(json.dumps({**meta, "price": price, "priced_at": "batch"}))
    assert main(argv(inp, tmp_path / "out")) == 0
    card = (tmp_path / "out" / "README.md").read_text()
    traces = pl.read_parquet(inp / "traces.parquet").filter(pl.col("teacher") == "large")
    p, c = int(traces["prompt_tokens"].sum()), int(traces["completion_tokens"].sum())
    online, batch = (p * 2.5 + c * 10.0) / 1e6, (p * 1.25 + c * 5.0) / 1e6
    row = f"| large | {traces.height} | {p:,} | {c:,} | 2.5 / 10 (batch 1.25 / 5) | {online:,.4f} | "
    assert row + f"{batch:,.4f} | batch |" in card
    assert "| small | 12 |" in card and "| not priced | - | - | - |" in card
