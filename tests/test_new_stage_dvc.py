"""A new filtering stage is its dvc.yaml entry plus its package: the release's funnel and card find it.

In a copy of the project (a temporary git repo, real DVC), a test package `mystage` drops the
verified traces whose question holds a word (`mystage.word`); dvc.yaml gains its stage between
`verify` and `release` (the release reads its table, depends on its stats.json and prints its params
section). Nothing else changes: no list of stages is edited. The filtering stages upstream are frozen
with the golden inputs as their outputs (as in tests/test_release_dvc.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import yaml

from tests.dvcutil import dvc_status, make_dvc_repo, run_dvc
from tests.test_release_dvc import golden_pipeline

MYSTAGE = '''"""Stage `mystage` (written by a test): drop the traces whose question holds `mystage.word`."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from core.config import StageConfig, load_section
from core.contracts import Funnel
from core.io import ParquetTable, TableWriter, write_json, write_parquet
from core.schema import REMOVED_SCHEMA
from core.stage import stage_main


class MyStageConfig(StageConfig):
    word: str


def run(params: Path, traces: Path, out: Path) -> None:
    word = load_section(MyStageConfig, params, "mystage").word
    table = ParquetTable(traces, required=("id", "question"))
    hit = pl.col("question").str.contains(word, literal=True)
    removed = []
    with TableWriter(out / "traces.parquet", table.schema) as writer:
        for batch in table.batches():
            writer.write(batch.filter(~hit))
            removed.append(
                batch.filter(hit).select(
                    "id", stage=pl.lit("mystage"), reason=pl.lit("has_word"), detail=pl.lit(word)
                )
            )
    gone = pl.concat(removed)
    write_parquet(gone, out / "removed.parquet", REMOVED_SCHEMA)
    counts = {"rows_in": table.num_rows, "rows_out": writer.rows, "removed": {"has_word": gone.height}}
    funnel = Funnel(stage="mystage", **counts)
    write_json({"funnel": funnel.dump()}, out / "stats.json")


def main(argv: list[str] | None = None) -> int:
    return stage_main(run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
'''


def _add_mystage(repo: Path) -> None:
    """The golden pipeline plus `mystage`: its package, its dvc.yaml entry, its params section."""
    golden_pipeline(repo)
    (repo / "mystage").mkdir()
    (repo / "mystage" / "__init__.py").write_text("")
    (repo / "mystage" / "mystage.py").write_text(MYSTAGE)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    (repo / "params.yaml").write_text(
        yaml.safe_dump({**params, "mystage": {"word": "[t0]"}}, sort_keys=False)
    )

    doc = yaml.safe_load((repo / "dvc.yaml").read_text())
    out = "${dirs.data}/mystage"
    mystage = {
        "cmd": "python -m mystage.mystage --params params.yaml --traces ${dirs.verify}/traces.parquet"
        f" --out {out}",
        "deps": ["mystage/__init__.py", "mystage/mystage.py", "${dirs.verify}/traces.parquet"],
        "params": ["mystage"],
        "outs": [f"{out}/traces.parquet", f"{out}/removed.parquet"],
        "metrics": [f"{out}/stats.json"],
    }
    release = doc["stages"]["release"]
    release["cmd"] = release["cmd"].replace("${dirs.verify}/traces.parquet", f"{out}/traces.parquet")
    release["deps"] = [
        f"{out}/traces.parquet" if d == "${dirs.verify}/traces.parquet" else d for d in release["deps"]
    ] + [f"{out}/stats.json"]
    release["params"].insert(release["params"].index("verify") + 1, "mystage")
    stages = list(doc["stages"].items())
    at = [name for name, _ in stages].index("release")
    doc["stages"] = dict([*stages[:at], ("mystage", mystage), *stages[at:]])
    (repo / "dvc.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


@pytest.mark.slow
def test_a_new_filtering_stage_reaches_the_funnel_and_the_card(tmp_path: Path) -> None:
    repo = make_dvc_repo(tmp_path / "repo", prepare=_add_mystage)
    run_dvc(repo, "repro", "release")
    assert dvc_status(repo, "release") == {}

    stats = json.loads((repo / "data" / "mystage" / "stats.json").read_text())["funnel"]
    assert stats == {"stage": "mystage", "rows_in": 21, "rows_out": 18, "removed": {"has_word": 3}}
    removed = pl.read_parquet(repo / "data" / "mystage" / "removed.parquet")
    assert removed.height == 3 and set(removed["reason"]) == {"has_word"}

    card = (repo / "release" / "README.md").read_text()
    assert "| mystage | 21 | 18 | 3 | has_word: 3 |" in card  # its row of the funnel table, after verify
    funnel = card[card.index("| stage | rows in |") :].split("\n\n")[0]
    assert [line.split(" | ")[0][2:] for line in funnel.splitlines()[2:]] == [
        "prompts", "license", "dedup", "traces", "verify", "mystage",
    ]  # fmt: skip
    assert "mystage:\n  word: '[t0]'" in card  # its params, in the reproduce block
    assert "| `data/mystage/stats.json` |" in card  # and its stats among the digested inputs
    released = pl.read_parquet(next((repo / "release" / "data" / "default").glob("*.parquet")))
    assert released.height == 18 and not released["question"].str.contains("[t0]", literal=True).any()
