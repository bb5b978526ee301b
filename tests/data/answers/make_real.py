"""Rebuild flan_dev.jsonl and niv1_dev.jsonl: real rows for the answer checker's control tests.

    python -m tests.data.answers.make_real   # from the repository root, with ../shared present

flan_dev.jsonl: from ../shared/data/real/flan_dev.parquet (FLAN v2's own templates over real
instances), for each of the 13 tasks rows of every template: two per template of the forward CoT
tasks, one per template of their inversions (`cot_*_ii`), and TREC (`trec:1.0.0`) 60 `zs_opt`
rows (FLAN's random option formats) and 20 `zs_noopt` rows; a fixed seed picks them.
niv1_dev.jsonl: from ../shared/data/real/niv1_dev.parquet, 6 zero-shot and 2 few-shot prompts of
each of its 6 tasks. Licences: see README.md beside this file.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

HERE = Path(__file__).parent
REAL = HERE.parents[2] / ".." / "shared" / "data" / "real"
SEED = 23
FLAN_COLUMNS = ("task_name", "template_type", "template_index", "line", "inputs", "targets")
FLAN_COLUMNS += ("answer", "rationale")
NIV1_COLUMNS = ("task_name", "template_type", "encoding", "instance", "inputs", "targets")


def flan_rows(df: pl.DataFrame) -> pl.DataFrame:
    """Rows of every template of every task (see the module docstring)."""
    parts = []
    for task in sorted(df["task_name"].unique()):
        t = df.filter(pl.col("task_name") == task)
        if task.startswith("trec"):
            for kind, n in (("zs_opt", 60), ("zs_noopt", 20)):
                parts.append(t.filter(pl.col("template_type") == kind).sample(n, seed=SEED))
            continue
        per = 1 if task.endswith("_ii") else 2
        for _, group in sorted(t.group_by("template_index"), key=lambda g: g[0]):
            parts.append(group.sample(per, seed=SEED))
    return pl.concat(parts).select(FLAN_COLUMNS)


def niv1_rows(df: pl.DataFrame) -> pl.DataFrame:
    """6 zero-shot and 2 few-shot prompts of every task."""
    parts = []
    for task in sorted(df["task_name"].unique()):
        t = df.filter(pl.col("task_name") == task)
        parts.append(t.filter(pl.col("template_type") == "zs_opt").sample(6, seed=SEED))
        parts.append(t.filter(pl.col("template_type") == "fs_opt").sample(2, seed=SEED))
    return pl.concat(parts).select(NIV1_COLUMNS)


def write_jsonl(df: pl.DataFrame, path: Path) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in df.iter_rows(named=True):
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> None:
    write_jsonl(flan_rows(pl.read_parquet(REAL / "flan_dev.parquet")), HERE / "flan_dev.jsonl")
    write_jsonl(niv1_rows(pl.read_parquet(REAL / "niv1_dev.parquet")), HERE / "niv1_dev.jsonl")


if __name__ == "__main__":
    main()
