"""Near duplicates on real CoT and TREC prompts (tests/data/dedup/flan_real.jsonl, see make_flan.py):
short questions, one-token inversions, numbers and template variants, the classes FLAN's other
submixes add to NIV2's."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import polars as pl
import pytest

from dedup.config import DedupConfig
from dedup.pipeline import DedupResult, dedup_frame

DATA = Path(__file__).parent / "data" / "dedup" / "flan_real.jsonl"
SEED = 20231101


@cache
def _frame() -> pl.DataFrame:
    return pl.read_ndjson(DATA)


@cache
def _run(policy: str = "keep", numbers: str = "distinct") -> DedupResult:
    return dedup_frame(_frame(), DedupConfig(template_variants=policy, numbers=numbers), SEED)


def _removed(result: DedupResult) -> pl.DataFrame:
    df = _frame().select("id", "kind", "example", "task_name")
    kept = df.select(pl.col("id").alias("kept_id"), pl.col("example").alias("kept_example"))
    return result.removed.join(df, on="id").join(kept, on="kept_id", how="left")


@pytest.mark.parametrize("policy", ["keep", "merge"])
def test_no_near_duplicate_joins_another_example(policy: str) -> None:
    near = _removed(_run(policy)).filter(pl.col("reason") == "near_duplicate")
    # five-word TREC questions, "What is a fear of ...?", one-token inversions ("(G)", "yes"),
    # problems that differ in their numbers: each is its own example
    assert (near["example"] == near["kept_example"]).all()
    # the light edits, and only they, are near duplicates, each of its own original
    assert sorted(near["kind"].unique().to_list()) == ["edit"]
    assert near.height == _frame().filter(pl.col("kind") == "edit").height == 6


@pytest.mark.parametrize("policy", ["keep", "merge"])
def test_every_removed_row_is_at_or_above_the_threshold_to_its_kept_row(policy: str) -> None:
    removed = _run(policy).removed.filter(pl.col("reason").is_in(["near_duplicate", "template_variant"]))
    assert removed.height and (removed["similarity"] >= DedupConfig().threshold).all()


def test_one_token_instances_are_judged_only_as_exact_duplicates() -> None:
    result = _run()
    removed = _removed(result).filter(pl.col("kind") == "ii")
    # the same prompt text in two tasks ("... justify this answer: yes") is one prompt
    assert set(removed["reason"]) == {"exact_duplicate"}
    short = result.stats["short_content"]
    assert short["min_content_words"] == 4 and short["rows"] > 100


def test_numbers_keep_problems_apart_unless_asked_to_merge() -> None:
    kept = _run()
    assert kept.stats["numbers"]["policy"] == "distinct" and kept.stats["numbers"]["pairs"] >= 4
    numbers = _removed(kept).filter(pl.col("kind") == "number")
    assert numbers.height == 0
    merged = _removed(_run(numbers="merge")).filter(
        (pl.col("kind") == "number") & (pl.col("reason") == "near_duplicate")
    )
    assert merged.height >= 4  # the renumbered problems join their originals by their words


def test_template_variants_follow_the_switch() -> None:
    keep = _run("keep")
    assert keep.stats["funnel"]["removed"]["template_variant"] == 0
    assert keep.stats["template_variants"]["found"] > 0
    merged = _removed(_run("merge"))
    variants = merged.filter(pl.col("reason") == "template_variant")
    # the same QASC question under the next template (its option block included), and the same
    # TREC question with and without its options, are merged only when asked
    qasc = variants.filter(pl.col("kind") == "variant")
    assert qasc.height >= 10 and (qasc["example"] == qasc["kept_example"]).all()
    trec = variants.filter(pl.col("kind") == "trec")
    assert (trec["example"] == trec["kept_example"]).mean() >= 0.8
    assert merged.filter(pl.col("reason") == "near_duplicate").height == 6
