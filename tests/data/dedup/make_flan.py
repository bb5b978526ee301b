"""Rebuild flan_real.jsonl: a few hundred real CoT and TREC prompts from ../shared/data/real/flan_dev.parquet.

    python -m tests.data.dedup.make_flan   # from the repository root

Also writes `flan_dev_sample.jsonl` and `niv1_dev_sample.jsonl`: a few hundred rows of each real
file with all its columns, which the benchmarks' smoke tests run on instead of ../shared.

Rows (FLAN v2's own templates over real instances; see LICENSE-flan.txt), each with `example`
(source file and line: the same example under another template, or in the inversion of its task,
shares it) and `kind`:

- `trec`: Flan 2021's TREC, 60 questions of five words or fewer and the 57 "What is a fear of
  ...?" questions, each under its zs_opt and zs_noopt template (template variants);
- `ii`: the CoT answer-to-question inversions whose whole instance is the answer ("Come up with a
  question and reasoning that would justify this answer: (G)"), 12 per task and template, plus
  30 other inversion prompts per task;
- `qasc`: 40 cot_qasc questions, 12 of them also under the next template (`variant`);
- `gsm8k`: 40 cot_gsm8k problems; `number`: the two real problems that differ only in their
  numbers, and 4 problems with their numbers changed (derived rows); `edit`: 6 light edits (5% of
  the words substituted, inserted or deleted, numbers kept) with a fixed seed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import polars as pl

from benchmarks.real_data import SEED, plant_edits

HERE = Path(__file__).parent
SOURCE = HERE.parents[2] / ".." / "shared" / "data" / "real" / "flan_dev.parquet"
ONE_TOKEN_TEMPLATES = (8, 9, 16, 17)
COLUMNS = ("task_name", "template_type", "example", "kind", "question")


def _rows(df: pl.DataFrame, kind: str) -> pl.DataFrame:
    return df.select(
        "task_name",
        "template_type",
        pl.concat_str("source", pl.col("line").cast(pl.String), separator="|").alias("example"),
        pl.lit(kind).alias("kind"),
        pl.col("inputs").alias("question"),
    )


def _renumber(text: str, rng: np.random.Generator) -> str:
    return re.sub(r"\d+", lambda m: str(int(m.group()) + int(rng.integers(1, 9))), text)


def main() -> None:
    df = pl.read_parquet(SOURCE).with_columns(pl.col("instance").str.split(" ").list.len().alias("words"))
    trec = df.filter(pl.col("task_name") == "trec:1.0.0")
    lines = pl.concat(
        [
            trec.filter(pl.col("words") <= 5).select("line").unique().sort("line").head(60),
            trec.filter(pl.col("instance").str.starts_with("What is a fear of")).select("line").unique(),
        ]
    )["line"]
    parts = [_rows(trec.filter(pl.col("line").is_in(lines.implode())), "trec")]
    ii = df.filter(pl.col("render") == "flan_ii")
    one = ii.filter(pl.col("template_index").is_in(list(ONE_TOKEN_TEMPLATES)))
    one = one.unique(["task_name", "inputs"], keep="first", maintain_order=True).sort("task_name", "line")
    parts.append(_rows(one.group_by("task_name", "template_index", maintain_order=True).head(12), "ii"))
    other = ii.filter(~pl.col("template_index").is_in(list(ONE_TOKEN_TEMPLATES))).sort("task_name", "line")
    parts.append(_rows(other.group_by("task_name", maintain_order=True).head(30), "ii"))
    qasc = df.filter((pl.col("task_name") == "cot_qasc") & (pl.col("render") == "flan_zs")).sort("line")
    qasc_lines = qasc.filter(
        pl.col("line").is_in(
            df.filter((pl.col("task_name") == "cot_qasc") & (pl.col("render") == "extra_variant"))[
                "line"
            ].implode()
        )
    ).head(12)
    parts.append(_rows(pl.concat([qasc_lines, qasc.head(40)]).unique("line", maintain_order=True), "qasc"))
    extra = df.filter((pl.col("task_name") == "cot_qasc") & (pl.col("render") == "extra_variant"))
    parts.append(_rows(extra.filter(pl.col("line").is_in(qasc_lines["line"].implode())), "variant"))
    gsm = df.filter((pl.col("task_name") == "cot_gsm8k") & (pl.col("render") == "flan_zs")).sort("line")
    masked = gsm.with_columns(pl.col("instance").str.replace_all(r"\d+", "#").alias("mask"))
    twins = masked.filter(pl.col("mask").is_duplicated())
    parts.append(_rows(gsm.head(40), "gsm8k"))
    parts.append(_rows(twins, "number"))
    rng = np.random.default_rng(SEED)
    renumbered = gsm.head(4).with_columns(
        pl.col("inputs").map_elements(lambda t: _renumber(t, rng), return_dtype=pl.String),
        (pl.col("line") + 100_000).alias("line"),
    )
    parts.append(_rows(renumbered, "number"))
    base = pl.concat(parts).unique(
        ["task_name", "template_type", "question"], keep="first", maintain_order=True
    )
    edits = plant_edits(base.filter(pl.col("kind") == "gsm8k").head(6), edits=6, min_words=20).filter(
        pl.col("kind") == "edit"
    )
    rows = pl.concat([base, edits.select(COLUMNS)])
    with (HERE / "flan_real.jsonl").open("w", encoding="utf-8") as f:
        for i, r in enumerate(rows.iter_rows(named=True)):
            f.write(json.dumps({"id": f"f{i:04d}", **r}, ensure_ascii=False) + "\n")
    sample = (
        pl.read_parquet(SOURCE)
        .sort("task_name", "template_type", "line")
        .group_by("task_name", "template_type", maintain_order=True)
    )
    sample.head(25).write_ndjson(HERE / "flan_dev_sample.jsonl")
    niv1 = pl.read_parquet(SOURCE.with_name("niv1_dev.parquet"))
    niv1.filter(pl.col("template_type") == "zs_opt").sort("task_name", "instance", "encoding").group_by(
        "task_name", maintain_order=True
    ).head(40).write_ndjson(HERE / "niv1_dev_sample.jsonl")


if __name__ == "__main__":
    main()
