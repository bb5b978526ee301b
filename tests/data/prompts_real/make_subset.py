"""Rebuild this folder's DPI-layout source: a few hundred real FLAN-format rows.

    python -m tests.data.prompts_real.make_subset   # from the repository root, with ../shared

From `../shared/data/real/niv1_dev.parquet` (NIV2 prompts of natural-instructions-v1, zero- and
few-shot encodings): every encoding of the four lowest-numbered instances of three tasks. From
`flan_dev.parquet` (CoT and Flan 2021 rows rendered with FLAN v2's templates): the first 24 rows of
seven tasks (file order), and up to 8 more rows per task with the same inputs as one of them
(FLAN's answer-to-question inversions repeat, so the stage meets real duplicate rows). Written as
`{submix}_submix_original/data/train-00000-of-00001.parquet`, the five FLAN columns.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

HERE = Path(__file__).parent
REAL = HERE.parents[2] / ".." / "shared" / "data" / "real"
FIELDS = ["inputs", "targets", "task_source", "task_name", "template_type"]
NIV2_TASKS = ("task039_qasc_find_overlapping_words", "task002_quoref_answer_generation",
              "task033_winogrande_answer_generation")  # fmt: skip
FLAN_TASKS = ("cot_gsm8k", "cot_gsm8k_ii", "cot_creak_ii", "cot_sensemaking_ii", "cot_qasc", "cot_ecqa_ii",
              "trec:1.0.0")  # fmt: skip


def main() -> None:
    niv = pl.read_parquet(REAL / "niv1_dev.parquet")
    niv = niv.filter(pl.col("task_name").is_in(NIV2_TASKS))
    niv = niv.filter(pl.col("instance").rank("dense").over("task_name") <= 4)
    flan = pl.read_parquet(REAL / "flan_dev.parquet").with_row_index("row")
    flan = flan.filter(pl.col("task_name").is_in(FLAN_TASKS))
    first = flan.filter(pl.int_range(pl.len()).over("task_name") < 24)
    twins = flan.join(first.select("task_name", "inputs").unique(), on=["task_name", "inputs"], how="semi")
    twins = twins.join(first, on="row", how="anti").filter(pl.int_range(pl.len()).over("task_name") < 8)
    flan = pl.concat([first, twins]).unique("row").sort("row")
    parts = {"niv2": niv, **{s: flan.filter(pl.col("submix") == s) for s in ("cot", "flan2021")}}
    for submix, df in parts.items():
        folder = HERE / f"{submix}_submix_original" / "data"
        folder.mkdir(parents=True, exist_ok=True)
        df.select(FIELDS).write_parquet(folder / "train-00000-of-00001.parquet", compression="zstd")
        print(submix, df.height)


if __name__ == "__main__":
    main()
