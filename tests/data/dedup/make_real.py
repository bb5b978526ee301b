"""Rebuild niv2_real.jsonl: a few dozen real NIV2 prompts from ../shared/data/real/niv1_dev.parquet.

    python -m tests.data.dedup.make_real   # from the repository root

Two tasks with long shared definitions and short instances (task039 qasc, task003 mctaco): 20
distinct instances each under the `Definition_Prompt` encoding, 4 of them also under `Prompt`
(template variants), and 6 light edits (5% of words substituted, inserted or deleted) made with a
fixed seed. Source: allenai/natural-instructions-v1 (Apache-2.0, see LICENSE-niv1.txt).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from benchmarks.dedup_data import edit_words

HERE = Path(__file__).parent
SOURCE = HERE.parents[2] / ".." / "shared" / "data" / "real" / "niv1_dev.parquet"
TASKS = ("task039_qasc_find_overlapping_words", "task003_mctaco_question_generation_event_duration")


def main() -> None:
    df = pl.read_parquet(SOURCE)
    rng = np.random.default_rng(7)
    rows = []
    for task in TASKS:
        t = df.filter(pl.col("task_name") == task)
        base = t.filter(pl.col("encoding") == "Definition_Prompt").sort("instance").head(20)
        for r in base.iter_rows(named=True):
            rows.append(
                {"task_name": task, "instance": r["instance"], "kind": "base", "question": r["inputs"]}
            )
        variants = t.filter(
            (pl.col("encoding") == "Prompt") & pl.col("instance").is_in(base["instance"][:4].implode())
        )
        for r in variants.iter_rows(named=True):
            rows.append(
                {"task_name": task, "instance": r["instance"], "kind": "variant", "question": r["inputs"]}
            )
        vocab = np.array(sorted({w for q in base["inputs"].to_list() for w in q.split()}))
        for r in base.head(3).iter_rows(named=True):
            words = r["inputs"].split(" ")
            k = max(1, round(0.05 * len(words)))
            edited = " ".join(edit_words(rng, words, vocab, k))
            rows.append({"task_name": task, "instance": r["instance"], "kind": "edit", "question": edited})
    with (HERE / "niv2_real.jsonl").open("w", encoding="utf-8") as f:
        for i, r in enumerate(rows):
            f.write(json.dumps({"id": f"r{i:03d}", **r}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
