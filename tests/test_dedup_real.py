"""Near duplicates on real NIV2 prompts (tests/data/dedup/niv2_real.jsonl, see make_real.py)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from dedup.config import DedupConfig
from dedup.content import TemplateCounts, prompt_key_docs
from dedup.corpus import Corpus
from dedup.minhash import fmix64
from dedup.normalize import normalize_batch
from dedup.pipeline import dedup_frame
from dedup.sketch import template_counts

DATA = Path(__file__).parent / "data" / "dedup" / "niv2_real.jsonl"
FLAN = Path(__file__).parent / "data" / "dedup" / "flan_real.jsonl"
SEED = 20231101


def _run(policy: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    df = pl.read_ndjson(DATA)
    result = dedup_frame(df, DedupConfig(template_variants=policy), SEED)
    removed = result.removed.join(df.select("id", "kind", "instance", "task_name"), on="id")
    return df, removed


@pytest.mark.parametrize("policy", ["keep", "merge"])
def test_shared_template_keeps_distinct_examples_and_removes_light_edits(policy: str) -> None:
    df, removed = _run(policy)
    # 20 distinct instances per task under one long definition: none merged with another
    bases = df.filter(pl.col("kind") == "base")
    assert removed.filter(pl.col("kind") == "base").height == 0
    # every 5%-word edit is removed as a near duplicate of its own original, and auditable
    edits = removed.filter(pl.col("kind") == "edit")
    assert edits.height == df.filter(pl.col("kind") == "edit").height == 6
    assert set(edits["reason"]) == {"near_duplicate"}
    originals = bases.select(
        pl.col("id").alias("kept_id"), pl.col("instance").alias("kept_instance"), "task_name"
    )
    joined = edits.join(originals, on=["kept_id", "task_name"])
    assert (joined["instance"] == joined["kept_instance"]).all() and joined.height == 6
    assert (edits["similarity"] >= 0.5).all() and (edits["template_similarity"] >= 0.85).all()
    assert edits["question"].null_count() == 0 and edits["kept_question"].null_count() == 0


def test_template_variants_follow_the_switch() -> None:
    df, kept_both = _run("keep")
    assert kept_both.filter(pl.col("kind") == "variant").height == 0
    _, merged = _run("merge")
    variants = merged.filter(pl.col("kind") == "variant")
    assert variants.height == df.filter(pl.col("kind") == "variant").height == 8
    assert set(variants["reason"]) == {"template_variant"}
    assert (variants["similarity"] == 1.0).all() and (variants["template_similarity"] < 0.85).all()


def test_short_prompts_do_not_collapse() -> None:
    # a long template plus a handful of words: distinct handfuls stay distinct
    template = "Definition: " + " ".join(f"w{i}" for i in range(80)) + ". Input: Sentence: {}. Output:"
    words = ["cats sleep", "dogs bark", "birds sing", "fish swim", "cows moo", "bees buzz", "owls hoot"]
    df = pl.DataFrame(
        {
            "id": [f"s{i:02d}" for i in range(len(words))],
            "task_name": ["short"] * len(words),
            "question": [template.format(w) for w in words],
        }
    )
    result = dedup_frame(df, DedupConfig(), SEED)
    assert result.kept.height == len(words)
    assert result.stats["content"]["tasks_with_template"] == 1


def test_template_set_equals_exact_counts_of_distinct_prompts() -> None:
    """The count-min table plus noted keys give exactly the spans an exact count would, and the
    spans that are template in two tasks are keyed for every task."""
    niv2 = pl.read_ndjson(DATA).select("id", "task_name", "question")
    flan = pl.read_ndjson(FLAN).select("id", "task_name", "question")
    df = pl.concat([niv2, flan]).sort("id")
    cfg = DedupConfig()
    counts = template_counts(Corpus.from_frame(df), cfg, SEED)
    # exact: in how many distinct prompts of its task each (task, span) key occurs
    corpus = Corpus.from_frame(df)
    distinct = df.with_columns(pl.Series("task", corpus.task)).unique(
        [pl.col("question").str.to_lowercase().alias("q"), "task"], keep="first"
    )
    scratch = TemplateCounts(len(corpus.task_names), 1, SEED)
    task = distinct["task"].to_numpy()
    keys, doc, span = prompt_key_docs(
        normalize_batch(distinct["question"].to_list()), task, scratch, cfg.template_ngram
    )
    occurrences = Counter(zip(keys.tolist(), task[doc].tolist(), span.tolist(), strict=True))
    per_task = {(k, s) for (k, t, s), c in occurrences.items() if c >= counts.threshold[t]}
    tasks_of = Counter(s for _, s in per_task)
    shared = np.array([s for s, n in tasks_of.items() if n >= cfg.template_shared_tasks], dtype=np.uint64)
    expected = {k for k, _ in per_task} | set((fmix64(shared ^ counts.shared_salt) | np.uint64(1)).tolist())
    got = {int(k) for k in counts.templates if k}
    assert expected and got == expected
    assert counts.shared == len(shared) > 0  # FLAN's CoT templates are shared by its tasks
