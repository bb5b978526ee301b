"""The `dedup` stage entry point: outputs, byte-identical reruns, bad params."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from dedup.audit import REMOVED_DEDUP_SCHEMA
from dedup.dedup import main
from tests.failing import stage_fails

DATA = Path(__file__).parent / "data" / "dedup"


def write_params(path: Path, **dedup: object) -> Path:
    section = {
        "eval_sets": [{"name": "golden", "path": str(DATA / "eval.jsonl"), "text_column": "prompt"}],
        **dedup,
    }
    path.write_text(json.dumps({"base": {"seed": 20231101}, "dedup": section}), encoding="utf-8")
    return path


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    out = tmp_path / "prompts.parquet"
    df = pl.read_ndjson(DATA / "prompts.jsonl").with_columns(pl.col("system_prompt_id").cast(pl.Int32))
    df.sort("id").write_parquet(out)
    return out


def test_stage_outputs_and_byte_identical_rerun(tmp_path: Path, prompts: Path) -> None:
    params = write_params(tmp_path / "params.yaml")
    outs = []
    for run in ("a", "b"):
        out = tmp_path / run
        assert main(["--params", str(params), "--prompts", str(prompts), "--out", str(out)]) == 0
        outs.append(out)
    for name in ("prompts.parquet", "removed.parquet"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes()
    assert (outs[0] / "stats.json").read_bytes() == (outs[1] / "stats.json").read_bytes()
    assert json.loads((outs[0] / "run.json").read_text())["seconds"] > 0
    kept = pq.read_table(outs[0] / "prompts.parquet")
    assert kept.schema.names[-1] == "cluster_id"
    assert (
        kept.schema.field("system_prompt_id").type == pq.read_schema(prompts).field("system_prompt_id").type
    )
    assert kept.column("id").to_pylist() == sorted(kept.column("id").to_pylist())
    removed = pq.read_table(outs[0] / "removed.parquet")
    assert removed.schema == REMOVED_DEDUP_SCHEMA
    funnel = json.loads((outs[0] / "stats.json").read_text())["funnel"]
    assert funnel == {
        "stage": "dedup",
        "rows_in": 41,
        "rows_out": 37,
        "removed": {
            "contaminated": 1,
            "in_previous_release": 0,
            "exact_duplicate": 2,
            "near_duplicate": 1,
            "template_variant": 0,
        },
    }
    assert kept.num_rows + removed.num_rows == 41


def test_stage_bad_params_and_inputs(
    tmp_path: Path, prompts: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"

    def fails(params: Path, pattern: str, table: Path = prompts) -> None:
        stage_fails(
            main, ["--params", str(params), "--prompts", str(table), "--out", str(out)], capsys, pattern
        )

    fails(
        write_params(tmp_path / "p1.yaml", bands=10, rows=13),
        r"^dedup: .*p1\.yaml: dedup: bands x rows must equal num_perm",
    )
    eval_sets = [{"name": "e", "path": str(DATA / "eval.jsonl"), "text_column": "text"}]
    fails(write_params(tmp_path / "p2.yaml", eval_sets=eval_sets), "text column 'text' not found")
    unsorted = tmp_path / "unsorted.parquet"
    pl.read_parquet(prompts).reverse().write_parquet(unsorted)
    fails(write_params(tmp_path / "p0.yaml"), "must be sorted by id", unsorted)
    fails(write_params(tmp_path / "p3.yaml", threshold=1.5), r"dedup\.threshold")
    assert not out.exists()  # no partial output
