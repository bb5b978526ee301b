"""The dedup stage's logic, in phases: decontaminate, drop rows of an earlier release, exact
clusters, near clusters (dedup/clusters.py), stats.

Exact duplicates compare the whole normalised question; the smallest id of a group is kept. Near
duplicates compare each prompt's own content (dedup/content.py) and are judged and clustered as
dedup/clusters.py says.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from core.contracts import Funnel
from dedup.audit import CODE, DUPLICATE_CODES, EARLY_SCHEMA, REASONS, STAGE, removed_frame, similarity_summary
from dedup.clusters import NearClusters, candidate_rows, near_clusters
from dedup.config import DedupConfig
from dedup.corpus import Corpus, release_free_memory
from dedup.decontam import DedupInputError, build_eval_index
from dedup.minhash import MinHashParams
from dedup.normalize import exact_keys, normalize_batch
from dedup.sketch import CrossIndex, Sketch, content_signatures, sketch_corpus, template_counts

logger = logging.getLogger(__name__)


def check_questions(df: pl.DataFrame, source: str) -> None:
    """Raise naming the rows when a question is missing or blank."""
    for col in ("id", "question"):
        if col not in df.columns:
            raise DedupInputError(f"{source}: missing column '{col}'")
    bad = df.filter(pl.col("question").is_null() | (pl.col("question").str.strip_chars() == ""))
    if bad.height:
        ids = ", ".join(str(i) for i in bad["id"].head(5).to_list())
        raise DedupInputError(f"{source}: {bad.height} row(s) with an empty question (ids: {ids})")
    dup = df.filter(pl.col("id").is_null() | pl.col("id").is_duplicated())["id"]
    if dup.len():
        raise DedupInputError(
            f"{source}: ids must be unique and non-null; repeated: {dup.unique().head(5).to_list()}"
        )


def check_corpus(corpus: Corpus) -> None:
    """Raise naming the rows when an id is null, ids are unsorted or an id repeats (empty
    questions are found by the first pass over the texts, `template_counts`)."""
    ids = corpus.ids
    if ids.null_count():
        raise DedupInputError(f"{corpus.source}: ids must be unique and non-null; {ids.null_count()} null")
    if not ids.is_sorted():
        raise DedupInputError(f"{corpus.source}: rows must be sorted by id (prompt table contract)")
    # sorted, so a repeat sits next to its twin (no hash table over every id)
    repeated = ids.slice(1).filter(ids.slice(1) == ids.slice(0, max(ids.len() - 1, 0)))
    if repeated.len():
        shown = repeated.unique().head(5).to_list()
        raise DedupInputError(f"{corpus.source}: ids must be unique and non-null; repeated: {shown}")


@dataclass
class DedupResult:
    """Kept rows (with `cluster_id`), removed rows, stats (a function of the data) and this run's
    timing (not: it goes to `run.json`, never into the release)."""

    keep: np.ndarray  # bool per row of the input sorted by id
    removed: pl.DataFrame
    stats: dict[str, Any]
    timing: dict[str, Any] = field(default_factory=dict)
    kept: pl.DataFrame | None = None  # the kept rows with `cluster_id` (dedup_frame only)


def sort_by_id(df: pl.DataFrame) -> pl.DataFrame:
    """`df` sorted by id (no copy when it already is)."""
    return df if df["id"].is_sorted() else df.sort("id")


def dedup_frame(
    df: pl.DataFrame,
    cfg: DedupConfig,
    seed: int,
    eval_sets: dict[str, list[str]] | None = None,
    previous: pl.DataFrame | None = None,
    source: str = "prompts",
) -> DedupResult:
    """Remove contaminated rows, rows of a previous release, exact and near duplicates of an
    in-memory prompt table; `kept` holds the kept rows with `cluster_id`."""
    check_questions(df, source)
    df = sort_by_id(df)
    cols = [c for c in ("id", "question", "task_name", "template_type") if c in df.columns]
    result = dedup_corpus(Corpus.from_frame(df.select(cols), source), cfg, seed, eval_sets, previous)
    result.kept = df.filter(pl.Series(result.keep)).with_columns(pl.col("id").alias("cluster_id"))
    return result


class _Phases:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.last = self.t0
        self.phases: dict[str, float] = {}

    def mark(self, name: str) -> None:
        """End a phase: record its time and hand the memory it freed back to the OS."""
        release_free_memory()
        now = time.perf_counter()
        self.phases[name] = round(now - self.last, 3)
        self.last = now


def _best_per_row(frames: list[pl.DataFrame], kind: str | None = None) -> pl.DataFrame:
    frames = [f for f in frames if f.height]
    if kind is not None:
        frames = [f.with_columns(pl.lit(kind).alias("kind")) for f in frames]
    if not frames:
        return pl.DataFrame(
            schema={"row": pl.Int64, "other": pl.Int64, "score": pl.Float64, "kind": pl.String}
        )
    return (
        pl.concat(frames)
        .sort(["row", "score", "other", "kind"], descending=[False, True, False, False])
        .unique("row", keep="first", maintain_order=True)
    )


def _previous_index(
    previous: pl.DataFrame, corpus: Corpus, counts: Any, params: MinHashParams, cfg: DedupConfig
) -> tuple[CrossIndex, pl.DataFrame]:
    """Content signatures and exact keys (with `pid`, `pquestion`) of an earlier release."""
    check_questions(previous, "previous release")
    prev = sort_by_id(previous)
    codes = {name: i for i, name in enumerate(corpus.task_names)}
    names = prev["task_name"].to_list() if "task_name" in prev.columns else [""] * prev.height
    task = np.array([codes.get(t or "", -1) for t in names], dtype=np.int64)
    unknown = task < 0
    questions = prev["question"].to_list()
    sig = np.empty((prev.height, params.num_perm), dtype=np.uint32)
    ok = np.zeros(prev.height, dtype=bool)
    for mask, cnt in ((~unknown, counts), (unknown, None)):
        idx = np.flatnonzero(mask)
        if len(idx):
            sig[idx], nsh = content_signatures(
                [questions[i] for i in idx], np.maximum(task[idx], 0), cnt, params, cfg
            )
            ok[idx] = nsh > 0
    hi, lo = exact_keys(normalize_batch(questions), questions)
    keys = pl.DataFrame(
        {
            "other": np.arange(prev.height),
            "hi": hi,
            "lo": lo,
            "pid": prev["id"],
            "pquestion": prev["question"],
        }
    )
    return CrossIndex.build(sig, ok, cfg.threshold, cfg), keys


@dataclass
class _Rows:
    """Per-row decisions: reason code (0 kept), kept row, similarities, exact twin."""

    code: np.ndarray
    root: np.ndarray
    score: np.ndarray
    tsim: np.ndarray
    twin: np.ndarray  # an exact duplicate's representative (-1 for other rows)
    early: list[dict[str, Any]] = field(default_factory=list)  # contaminated and released rows

    @classmethod
    def start(cls, n: int) -> _Rows:
        return cls(
            np.zeros(n, dtype=np.int8),
            np.arange(n),
            np.full(n, np.nan),
            np.full(n, np.nan),
            np.full(n, -1, dtype=np.int64),
        )


def decontaminate(rows: _Rows, sk: Sketch, eval_index: Any, eval_sets: dict[str, list[str]]) -> Counter[str]:
    """Remove rows that hold an evaluation item's n-grams or match it by MinHash."""
    contaminated: Counter[str] = Counter()
    if eval_index is None:
        return contaminated
    items = [t for texts in eval_sets.values() for t in texts]
    overlaps = [f.rename({"item": "other"}) for f in sk.overlaps if f.height]
    found = [_best_per_row(overlaps, "ngram_overlap"), _best_per_row(sk.eval_hits, "minhash_jaccard")]
    for row, item, value, kind in _best_per_row(found).iter_rows():
        name = eval_index.names[item]
        rows.code[row] = CODE["contaminated"]
        rows.early.append(
            {
                "row": row,
                "kept_question": items[item],
                "similarity": value,
                "detail": f"{name}: item {int(eval_index.item_index[item])}, {kind} {value:.3f}",
            }
        )
        contaminated[name] += 1
    return contaminated


def drop_released(rows: _Rows, sk: Sketch, prev_keys: pl.DataFrame | None) -> None:
    """Remove rows already in an earlier release: exact key or content MinHash match."""
    if prev_keys is None:
        return
    active = np.flatnonzero(rows.code == 0)
    exact = (
        pl.DataFrame({"row": active, "hi": sk.key_hi[active], "lo": sk.key_lo[active]})
        .join(prev_keys.select("other", "hi", "lo"), on=["hi", "lo"])
        .select("row", "other", pl.lit(1.0).alias("score"))
    )
    near = [h.filter(pl.col("row").is_in(active)) for h in sk.previous_hits if h.height]
    best = _best_per_row([_best_per_row([exact], "exact"), _best_per_row(near, "minhash_jaccard")])
    pids, questions = prev_keys["pid"].to_list(), prev_keys["pquestion"].to_list()
    for row, other, value, kind in best.iter_rows():
        rows.code[row] = CODE["in_previous_release"]
        rows.early.append(
            {
                "row": row,
                "kept_id": pids[other],
                "kept_question": questions[other],
                "similarity": value,
                "detail": f"previous release id {pids[other]}: {kind} {value:.3f}",
            }
        )


def exact_clusters(rows: _Rows, sk: Sketch) -> np.ndarray:
    """Each active row's representative: the first row (smallest id) with its normalised text."""
    n = len(rows.code)
    active = np.flatnonzero(rows.code == 0)
    order = np.lexsort((active, sk.key_lo[active], sk.key_hi[active]))
    hi, lo, sorted_rows = sk.key_hi[active][order], sk.key_lo[active][order], active[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])
    rep = np.arange(n)
    rep[sorted_rows] = sorted_rows[np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))]
    return rep


def apply_clusters(rows: _Rows, rep: np.ndarray, near: NearClusters) -> None:
    """Near-duplicate and variant rows join their kept row; an exact duplicate joins its
    representative's (with the representative's similarity to it)."""
    n = len(rows.code)
    moved = near.target != near.rows
    gone = near.rows[moved]
    rows.root[gone] = near.target[moved]
    rows.score[gone], rows.tsim[gone] = near.content[moved], near.template[moved]
    codes = np.array([0, CODE["near_duplicate"], CODE["template_variant"]], dtype=np.int8)
    rows.code[gone] = codes[near.kind[moved]]
    exact = np.flatnonzero(rep != np.arange(n))
    twin = rep[exact]
    kept_twin = rows.root[twin] == twin
    rows.root[exact] = rows.root[twin]
    rows.score[exact] = np.where(kept_twin, 1.0, rows.score[twin])
    rows.tsim[exact] = np.where(kept_twin, 1.0, rows.tsim[twin])
    rows.twin[exact] = twin
    rows.code[exact] = CODE["exact_duplicate"]


def dedup_stats(
    corpus: Corpus,
    cfg: DedupConfig,
    rows: _Rows,
    sk: Sketch,
    near: NearClusters,
    short_rows: int,
    contaminated: Counter[str],
    eval_sets: dict[str, list[str]],
) -> dict[str, Any]:
    """The stage's `stats.json` (a function of the data and the params)."""
    n = corpus.n
    code = rows.code
    keep = code == 0
    by_code = np.bincount(code, minlength=len(REASONS) + 1)
    counts_by_reason = {r: int(by_code[CODE[r]]) for r in REASONS}
    dup = np.isin(code, DUPLICATE_CODES)
    sizes = Counter(pl.Series(rows.root[keep | dup]).value_counts()["count"].to_list())
    is_near, is_variant = code == CODE["near_duplicate"], code == CODE["template_variant"]
    with_template = int((sk.n_content_words < sk.n_words).sum())
    bands, band_rows = cfg.lsh()
    return {
        "funnel": Funnel(stage=STAGE, rows_in=n, rows_out=int(keep.sum()), removed=counts_by_reason).dump(),
        "exact_duplicates": counts_by_reason["exact_duplicate"],
        "near_duplicates": counts_by_reason["near_duplicate"],
        "template_variants": {
            "policy": cfg.template_variants,
            "found": near.variants_found,
            "merged": counts_by_reason["template_variant"],
            "pairs": near.variant_pairs,
        },
        "numbers": {"policy": cfg.numbers, "pairs": near.number_pairs},
        "short_content": {"min_content_words": cfg.min_content_words, "rows": short_rows},
        "in_previous_release": counts_by_reason["in_previous_release"],
        "contaminated": {name: int(contaminated.get(name, 0)) for name in sorted(eval_sets)},
        "eval_items": {name: len(texts) for name, texts in sorted(eval_sets.items())},
        "cluster_sizes": {str(k): int(sizes[k]) for k in sorted(sizes)},
        "merge_similarity": {
            "near_duplicate": similarity_summary(rows.score[is_near]),
            "template_variant": similarity_summary(rows.score[is_variant]),
            "near_duplicate_template": similarity_summary(rows.tsim[is_near]),
        },
        "content": {
            "tasks": len(corpus.task_names),
            "tasks_with_template": int(
                np.unique(corpus.task[sk.n_content_words < sk.n_words]).size if with_template else 0
            ),
            "prompts_with_template": with_template,
            "prompts_without_content": int((sk.n_content == 0).sum()),
            "template_word_share": round(float(1 - sk.n_content_words.sum() / max(sk.n_words.sum(), 1)), 4),
        },
        "lsh": {
            "ngram": cfg.ngram,
            "template_ngram": cfg.template_ngram,
            "num_perm": cfg.num_perm,
            "bands": bands,
            "rows": band_rows,
            "threshold": cfg.threshold,
            "template_diff_words": cfg.template_diff_words,
            "template_diff_share": cfg.template_diff_share,
            "scheme": cfg.scheme,
            "candidate_pairs": near.candidate_pairs,
            "verified_pairs": near.verified_pairs,
        },
    }


def dedup_corpus(
    corpus: Corpus,
    cfg: DedupConfig,
    seed: int,
    eval_sets: dict[str, list[str]] | None = None,
    previous: pl.DataFrame | None = None,
) -> DedupResult:
    """Decide every row of `corpus` (rows sorted by id); texts are streamed, not held."""
    clock = _Phases()
    n = corpus.n
    params = MinHashParams(cfg.num_perm, seed, cfg.ngram, cfg.scheme)
    eval_sets = eval_sets or {}
    eval_index = build_eval_index(eval_sets, params, cfg.decontam_ngram) if eval_sets else None
    eval_cross = None
    if eval_index is not None and cfg.decontam_threshold is not None:
        eval_cross = CrossIndex.build(eval_index.signatures, eval_index.nonempty, cfg.decontam_threshold, cfg)
    counts = template_counts(corpus, cfg, seed)
    clock.mark("templates")
    prev_cross, prev_keys = (None, None)
    if previous is not None:
        prev_cross, prev_keys = _previous_index(previous, corpus, counts, params, cfg)
    rows = _Rows.start(n)
    with tempfile.TemporaryDirectory(prefix="dedup-bands-") as band_dir:
        sk = sketch_corpus(corpus, counts, params, cfg, Path(band_dir), eval_index, eval_cross, prev_cross)
        clock.mark("sketch")
        contaminated = decontaminate(rows, sk, eval_index, eval_sets)
        drop_released(rows, sk, prev_keys)
        clock.mark("decontaminate")
        rep = exact_clusters(rows, sk)
        clock.mark("exact")
        active = (rows.code == 0) & (rep == np.arange(n))
        cand = candidate_rows(sk, active)
        short_rows = int((active & (sk.n_content_words < cfg.min_content_words)).sum())
        near = near_clusters(corpus, sk, counts, cfg, cand)
    clock.mark("near")
    apply_clusters(rows, rep, near)
    removed = removed_frame(
        corpus,
        rows.code,
        rows.root,
        rows.score,
        rows.tsim,
        rows.twin,
        pl.DataFrame(rows.early, schema=EARLY_SCHEMA),
    )
    stats = dedup_stats(corpus, cfg, rows, sk, near, short_rows, contaminated, eval_sets)
    clock.mark("outputs")
    seconds = time.perf_counter() - clock.t0
    timing = {"seconds": round(seconds, 3), "docs_per_s": round(n / seconds, 1) if seconds else None}
    logger.info("dedup: %s", stats["funnel"])
    return DedupResult(rows.code == 0, removed, stats, {**timing, "phases": clock.phases})
