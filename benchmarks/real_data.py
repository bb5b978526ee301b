"""Real FLAN-format prompts for the benchmarks, with the ground truth needed to judge dedup.

`../shared/data/real/` holds two files (see its README):

- `niv1_dev.parquet`: real NIV2 prompts (Natural Instructions v1 renderings); the zero-shot ones
  are used. An example is (task, instance index); its instance is what follows the last `input:`.
- `flan_dev.parquet`: CoT (forward and answer-to-question inversions) and Flan 2021's TREC,
  rendered with FLAN v2's own templates. An example is (source file, line): the same line under
  two templates is the same example; its instance is the `instance` column.

`load_real` gives one frame for either: `question, task_name, task_source, template_type, submix,
example, instance, template` (+ `answer` where the file has one). `plant_edits` adds light wording
edits; `score_removals` judges a dedup's removals against the ground truth.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from benchmarks.dedup_data import bench_ids, tracked_edit

SEED = 20231101
REAL_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
REAL_FILES = {"niv1_dev": REAL_DIR / "niv1_dev.parquet", "flan_dev": REAL_DIR / "flan_dev.parquet"}
_INPUT = re.compile(r"(?is)^.*\binput:\s*(.*?)\s*(?:output:\s*)?$")
_WORD = re.compile(r"\w+")
_NUMBER = re.compile(r"\d")


def instance_text(prompt: str) -> str:
    """The instance of an NIV2 prompt: what follows its last `input:` (without `output:`)."""
    m = _INPUT.match(prompt)
    return m.group(1) if m else prompt


def load_real(path: Path) -> pl.DataFrame:
    """Zero-shot prompts of a real file (Parquet, or JSONL with the same columns) with their
    example key and instance text."""
    raw = pl.read_ndjson(path) if path.suffix == ".jsonl" else pl.read_parquet(path)
    df = raw.filter(pl.col("template_type").is_in(["zs_opt", "zs_noopt"]))
    if "line" in df.columns:  # flan_dev: FLAN v2 renderings, one example per (source, line)
        out = df.select(
            pl.col("inputs").alias("question"),
            "task_name",
            "task_source",
            "template_type",
            "submix",
            (pl.col("source") + "|" + pl.col("line").cast(pl.String)).alias("example"),
            "instance",
            "answer",
            pl.concat_str(
                "task_name", "template_type", pl.col("template_index").cast(pl.String), separator="|"
            ).alias("template"),
        )
    else:  # niv1_dev: one example per (task, instance index)
        out = df.select(
            pl.col("inputs").alias("question"),
            "task_name",
            pl.lit("NIv2").alias("task_source"),
            "template_type",
            pl.lit("niv2").alias("submix"),
            (pl.col("task_name") + "|" + pl.col("instance").cast(pl.String)).alias("example"),
            pl.col("inputs").map_elements(instance_text, return_dtype=pl.String).alias("instance"),
            (pl.col("task_name") + "|" + pl.col("encoding")).alias("template"),
        )
    return out


def plant_edits(
    df: pl.DataFrame, edits: int = 400, share: float = 0.05, min_words: int = 30, seed: int = SEED
) -> pl.DataFrame:
    """`df` plus `edits` copies of prompts of `min_words`+ words with `share` of their words edited
    (`kind`: base | edit; an edit's `original` is the id of the row it copies; `instance_kept`: the
    word 3-gram Jaccard of its instance, as the edit left it, to the original's). Rows get ids."""
    rng = np.random.default_rng(seed)
    base = df.with_columns(pl.lit("base").alias("kind"), pl.Series("id", bench_ids("real", df.height)))
    n_words = base["question"].str.split(" ").list.len()
    # one copy at most per distinct text: two renderings that give the same text are one prompt
    first = base.select(pl.struct("task_name", "question").is_first_distinct()).to_series()
    eligible = np.flatnonzero(((n_words >= min_words) & first).to_numpy())
    vocab = np.array(
        sorted({w for q in base["question"].to_list() for w in q.split() if not _NUMBER.search(w)})
    )
    picks = np.sort(rng.choice(eligible, size=min(edits, len(eligible)), replace=False))
    copies, kept = [], []
    for i in picks.tolist():
        question, instance = base["question"][i], base["instance"][i]
        words = question.split(" ")
        k = max(1, round(share * len(words)))
        # a light wording edit keeps every number: a changed number makes another problem
        edit = tracked_edit(rng, words, vocab, k, editable=lambda w: not _NUMBER.search(w))
        copies.append(" ".join(edit[0]))
        kept.append(instance_jaccard(instance, edited_instance(question, instance, *edit)))
    planted = (
        base[picks]
        .with_columns(
            pl.Series("question", copies),
            pl.Series("instance_kept", kept, dtype=pl.Float64),
            pl.lit("edit").alias("kind"),
            pl.col("id").alias("original"),
        )
        .with_columns(pl.Series("id", bench_ids("real-edit", len(copies))))
    )
    return pl.concat([base, planted], how="diagonal").sort("id")


def edited_instance(
    question: str, instance: str, words: list[str], origin: list[int], new: list[bool]
) -> str:
    """The instance as a `tracked_edit` of `question` left it: its words, edited ones included
    (an unedited word at the instance's edge cut to the part inside it); `instance` itself when
    the prompt does not hold it verbatim (an inversion shows the rationale, not the question)."""
    start = question.find(instance)
    if start < 0 or not instance:
        return instance
    end, spans, pos = start + len(instance), [], 0
    for w in question.split(" "):
        spans.append((pos, pos + len(w)))
        pos += len(w) + 1
    pieces = []
    for w, j, fresh in zip(words, origin, new, strict=True):
        a, b = spans[j]
        if b > start and a < end:
            pieces.append(w if fresh else question[max(a, start) : min(b, end)])
    return " ".join(pieces)


def word_ngrams(text: str, n: int = 3) -> set[str]:
    """Casefolded word n-grams of `text` (a text shorter than n words is one n-gram)."""
    words = _WORD.findall(text.casefold())
    if len(words) < n:
        return {" ".join(words)}
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


def instance_jaccard(a: str, b: str, n: int = 3) -> float:
    """Jaccard of the word 3-gram sets of two instances (the benchmarks' ground truth)."""
    sa, sb = word_ngrams(a, n), word_ngrams(b, n)
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


def numbers(text: str) -> list[str]:
    """The numbers of a text, sorted (a multiset)."""
    return sorted(re.findall(r"\d+", text))


def score_removals(
    df: pl.DataFrame, removed: pl.DataFrame, threshold: float | None, variants: str
) -> dict[str, Any]:
    """Judge a dedup's removals of `df` (a `plant_edits` frame; `sid` is each row's id in
    `removed`) against the ground truth, per submix: near-duplicate removals (`near_duplicate`,
    and `template_variant` with `merge`), false merges (another example whose instance shares < 50%
    of its word 3-grams, or other numbers), removals below the similarity `threshold` (chains;
    null when `removed` has no similarity), template variants removed, recall of the planted edits
    (all of them, and those whose instance keeps >= 50% of its word 3-grams: the same example)."""
    # byte-identical rows of one task share a stage id: the first (by bench id) stands for them;
    # a row is under every template whose rendering of its example gave that same text
    templates = df.group_by("sid").agg(pl.col("template").unique().sort().alias("templates"))
    rows = df.sort("id").unique("sid", keep="first", maintain_order=True).join(templates, on="sid")
    info = rows.select("sid", "example", "instance", "templates", "submix", "task_name", "kind")
    merges = (
        removed.filter(pl.col("reason").is_in(["near_duplicate", "template_variant"]))
        .with_columns(
            pl.col("similarity")
            if "similarity" in removed.columns
            else pl.lit(None, pl.Float64).alias("similarity")
        )
        .select(pl.col("id").alias("sid"), "kept_id", "reason", pl.col("similarity").cast(pl.Float64))
        .join(info, on="sid")
        .join(info.rename(lambda c: f"kept_{c}").rename({"kept_sid": "kept_id"}), on="kept_id")
    )
    pairs = list(zip(merges["instance"].to_list(), merges["kept_instance"].to_list(), strict=True))
    jac = [instance_jaccard(a, b) for a, b in pairs]
    other_numbers = [numbers(a) != numbers(b) for a, b in pairs]
    merges = merges.with_columns(
        pl.Series("instance_jaccard", jac, dtype=pl.Float64),
        pl.Series("other_numbers", other_numbers, dtype=pl.Boolean),
    ).with_columns(
        (
            (pl.col("example") != pl.col("kept_example"))
            & ((pl.col("instance_jaccard") < 0.5) | pl.col("other_numbers"))
        ).alias("false_merge"),
        (
            (pl.col("example") == pl.col("kept_example"))
            & (pl.col("templates").list.set_intersection("kept_templates").list.len() == 0)
        ).alias("variant"),
    )
    # planted edits: the copy must end in its original's cluster
    cluster = rows.select("sid").join(
        removed.filter(pl.col("kept_id").is_not_null()).select(pl.col("id").alias("sid"), "kept_id"),
        on="sid",
        how="left",
    )
    cluster = cluster.select("sid", pl.coalesce("kept_id", "sid").alias("cluster"))
    sid_of = df.select("id", "sid")
    edits = (
        df.filter(pl.col("kind") == "edit")
        .select("sid", "original", "submix", "instance_kept")
        .join(sid_of.rename({"id": "original", "sid": "original_sid"}), on="original")
        .join(cluster, on="sid")
        .join(cluster.rename({"sid": "original_sid", "cluster": "original_cluster"}), on="original_sid")
    )
    out: dict[str, Any] = {}
    for submix in [None, *sorted(df["submix"].unique().to_list())]:
        m = merges if submix is None else merges.filter(pl.col("submix") == submix)
        e = edits if submix is None else edits.filter(pl.col("submix") == submix)
        near = m.filter(pl.col("reason") == "near_duplicate")
        hit = e["cluster"] == e["original_cluster"]
        caught = int(hit.sum())
        same = e["instance_kept"] >= 0.5  # by the false-merge rule, still the original's example
        caught_same = int((hit & same).sum())
        fm = int(m["false_merge"].sum())
        out[submix or "all"] = {
            "prompts": int(rows.filter(pl.col("submix") == submix).height if submix else rows.height),
            "near_removals": m.height,
            "false_merges": fm,
            "false_merge_rate": round(fm / m.height, 4) if m.height else 0.0,
            "other_example_merges": int((m["example"] != m["kept_example"]).sum()),
            "chained": int((m["similarity"] < threshold - 1e-9).sum()) if threshold is not None else None,
            "variants_removed": int(near["variant"].sum()) if variants == "keep" else int(m["variant"].sum()),
            "planted_edits": e.height,
            "edits_removed": caught,
            "edit_recall": round(caught / e.height, 4) if e.height else 1.0,
            "edits_same_example": int(same.sum()),
            "same_example_edits_removed": caught_same,
            "same_example_edit_recall": round(caught_same / same.sum(), 4) if same.sum() else 1.0,
            "other_example_edits_removed": caught - caught_same,
        }
    examples = merges.filter("false_merge").sort("sid").head(10)
    out["false_merge_examples"] = [
        {
            "task": t,
            "instance": a[:160],
            "kept_instance": b[:160],
            "similarity": None if s is None else round(s, 3),
        }
        for t, a, b, s in examples.select("task_name", "instance", "kept_instance", "similarity").iter_rows()
    ]
    return out
