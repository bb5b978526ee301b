"""The dedup stage's logic: decontaminate, then exact, near-duplicate and template-variant merges.

Exact duplicates compare the whole normalised question. Near duplicates compare each prompt's own
content (dedup/content.py): LSH over content MinHash signatures finds candidates, every candidate
is verified on its shingle sets, and union-find clusters keep the smallest id. A verified pair
whose templates differ (template-word Jaccard below `template_threshold`) is the same example
under another template: merged only when `template_variants: merge`.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from dedup.config import DedupConfig
from dedup.corpus import Corpus
from dedup.decontam import DedupInputError, build_eval_index
from dedup.lsh import candidate_pairs, connected_components
from dedup.minhash import MinHashParams
from dedup.normalize import exact_keys, normalize_batch
from dedup.sketch import CrossIndex, Sketch, content_signatures, sketch_corpus, template_counts
from dedup.verify import pair_similarity

logger = logging.getLogger(__name__)

STAGE = "dedup"
REASONS = ("contaminated", "in_previous_release", "exact_duplicate", "near_duplicate", "template_variant")
SIMILARITY_BINS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


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
    """Raise naming the rows when an id repeats, ids are unsorted, or a question is empty."""
    ids = corpus.ids
    dup = ids.filter(ids.is_null() | ids.is_duplicated())
    if dup.len():
        raise DedupInputError(
            f"{corpus.source}: ids must be unique and non-null; repeated: {dup.unique().head(5).to_list()}"
        )
    if not ids.is_sorted():
        raise DedupInputError(f"{corpus.source}: rows must be sorted by id (prompt table contract)")
    bad: list[str] = []
    for lo, questions in corpus.batches():
        blank = questions.is_null() | (questions.str.strip_chars() == "")
        if blank.any():
            bad += ids.slice(lo, questions.len()).filter(blank).head(5).to_list()
    if bad:
        raise DedupInputError(f"{corpus.source}: row(s) with an empty question (ids: {', '.join(bad[:5])})")


@dataclass
class DedupResult:
    """Kept rows (with `cluster_id`), removed rows and stats."""

    keep: np.ndarray  # bool per row of the input sorted by id
    removed: pl.DataFrame
    stats: dict[str, Any]
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
    """Remove contaminated rows, rows of a previous release, exact and near duplicates."""
    check_questions(df, source)
    df = sort_by_id(df)
    cols = [c for c in ("id", "question", "task_name") if c in df.columns]
    result = dedup_rows(df.select(cols), cfg, seed, eval_sets, previous, source)
    result.kept = df.filter(pl.Series(result.keep)).with_columns(pl.col("id").alias("cluster_id"))
    return result


def dedup_rows(
    df: pl.DataFrame,
    cfg: DedupConfig,
    seed: int,
    eval_sets: dict[str, list[str]] | None = None,
    previous: pl.DataFrame | None = None,
    source: str = "prompts",
) -> DedupResult:
    """The decisions for `id`, `question` (and `task_name`) rows; `keep` follows the rows by id."""
    check_questions(df, source)
    return dedup_corpus(Corpus.from_frame(sort_by_id(df), source), cfg, seed, eval_sets, previous)


class _Phases:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.last = self.t0
        self.phases: dict[str, float] = {}

    def mark(self, name: str) -> None:
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


def _merges(sk: Sketch, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Candidate pairs (indices into `cand`) from LSH, one band at a time."""
    found_u, found_v = [], []
    for b in range(sk.bands):
        keys = sk.band(b)[cand][:, None]
        u, v = candidate_pairs(keys)
        found_u.append(u)
        found_v.append(v)
    if not found_u:
        return np.empty(0, np.int64), np.empty(0, np.int64), 0
    pairs = pl.DataFrame({"u": np.concatenate(found_u), "v": np.concatenate(found_v)}).unique().sort("u", "v")
    return pairs["u"].to_numpy(), pairs["v"].to_numpy(), pairs.height


def similarity_summary(values: np.ndarray) -> dict[str, Any]:
    """Histogram and quantiles of merge similarities (for stats.json)."""
    if not len(values):
        return {"count": 0}
    edges = np.array([0.0, *SIMILARITY_BINS])
    hist = {
        f"[{edges[i]:.1f},{edges[i + 1]:.1f})": int(((values >= edges[i]) & (values < edges[i + 1])).sum())
        for i in range(len(edges) - 1)
    }
    hist["1.0"] = int((values >= 1.0).sum())
    q = np.quantile(values, [0.01, 0.1, 0.5])
    return {
        "count": len(values),
        "histogram": hist,
        "min": round(float(values.min()), 4),
        "p01": round(float(q[0]), 4),
        "p10": round(float(q[1]), 4),
        "median": round(float(q[2]), 4),
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
    ids = corpus.ids
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
    with tempfile.TemporaryDirectory(prefix="dedup-bands-") as band_dir:
        sk = sketch_corpus(corpus, counts, params, cfg, Path(band_dir), eval_index, eval_cross, prev_cross)
        clock.mark("sketch")
        reason = np.full(n, "", dtype=object)
        detail = np.full(n, "", dtype=object)
        kept_id = np.full(n, None, dtype=object)
        other_text = np.full(n, None, dtype=object)
        score = np.full(n, np.nan)

        # 1. Contamination: n-gram overlap with, or MinHash similarity to, an evaluation item.
        contaminated: Counter[str] = Counter()
        if eval_index is not None:
            items = [t for texts in eval_sets.values() for t in texts]
            overlaps = [f.rename({"item": "other"}) for f in sk.overlaps if f.height]
            found = [_best_per_row(overlaps, "ngram_overlap"), _best_per_row(sk.eval_hits, "minhash_jaccard")]
            for row, item, value, kind in _best_per_row(found).iter_rows():
                name = eval_index.names[item]
                reason[row] = "contaminated"
                detail[row] = f"{name}: item {int(eval_index.item_index[item])}, {kind} {value:.3f}"
                other_text[row] = items[item]
                score[row] = value
                contaminated[name] += 1

        # 2. Rows already released: exact key or content MinHash match with the previous release.
        if prev_cross is not None and prev_keys is not None:
            active = np.flatnonzero(reason == "")
            exact = (
                pl.DataFrame({"row": active, "hi": sk.key_hi[active], "lo": sk.key_lo[active]})
                .join(prev_keys.select("other", "hi", "lo"), on=["hi", "lo"])
                .select("row", "other", pl.lit(1.0).alias("score"))
            )
            near = [h.filter(pl.col("row").is_in(active)) for h in sk.previous_hits if h.height]
            best = _best_per_row([_best_per_row([exact], "exact"), _best_per_row(near, "minhash_jaccard")])
            pids, pq_ = prev_keys["pid"].to_list(), prev_keys["pquestion"].to_list()
            for row, other, value, kind in best.iter_rows():
                reason[row] = "in_previous_release"
                kept_id[row] = pids[other]
                other_text[row] = pq_[other]
                score[row] = value
                detail[row] = f"previous release id {pids[other]}: {kind} {value:.3f}"
        clock.mark("decontaminate")

        # 3. Exact duplicates of the whole normalised question; the smallest id is kept.
        active = np.flatnonzero(reason == "")
        groups = pl.DataFrame({"row": active, "hi": sk.key_hi[active], "lo": sk.key_lo[active]}).with_columns(
            pl.col("row").min().over(["hi", "lo"]).alias("rep")
        )
        rep = np.arange(n)
        rep[groups["row"].to_numpy()] = groups["rep"].to_numpy()
        is_exact = rep != np.arange(n)
        clock.mark("exact")

        # 4. Near duplicates on own content: LSH candidates, every one verified.
        cand = np.flatnonzero((reason == "") & ~is_exact & (sk.n_content > 0))
        u, v, n_candidates = _merges(sk, cand)
    clock.mark("lsh")
    jc, jt = pair_similarity(corpus, counts, cfg, cand[u], cand[v])
    match = jc >= cfg.threshold
    same = match & (jt >= cfg.template_threshold)
    variant = match & ~same
    clock.mark("verify")
    label_near = connected_components(len(cand), u[same], v[same])
    label_all = connected_components(len(cand), u[match], v[match])
    merge = cfg.template_variants == "merge"
    label = label_all if merge else label_near
    root = np.arange(n)
    root[cand] = cand[label]
    root = root[rep]  # an exact duplicate joins its representative's cluster
    is_merged = (reason == "") & ~is_exact & (root != np.arange(n))
    near_root = np.arange(n)
    near_root[cand] = cand[label_near]
    near_root = near_root[rep]
    is_variant = is_merged & (near_root != root)
    is_near = is_merged & ~is_variant
    variants_found = int(
        (label_all != np.arange(len(cand))).sum() - (label_near != np.arange(len(cand))).sum()
    )

    merged_rows = np.flatnonzero(is_merged)
    mc, mt = pair_similarity(corpus, counts, cfg, merged_rows, root[merged_rows])
    score[merged_rows] = mc
    tsim = np.full(n, np.nan)
    tsim[merged_rows] = mt
    exact_rows = np.flatnonzero(is_exact)
    score[exact_rows] = 1.0
    tsim[exact_rows] = 1.0
    reason[exact_rows] = "exact_duplicate"
    reason[merged_rows[is_variant[merged_rows]]] = "template_variant"
    reason[merged_rows[~is_variant[merged_rows]]] = "near_duplicate"
    dup = is_exact | is_merged
    dup_rows = np.flatnonzero(dup)
    kept_id[dup_rows] = ids.gather(root[dup_rows]).to_list()
    keep = reason == ""
    clock.mark("clusters")

    gone = np.flatnonzero(~keep)
    kept_rows = root[dup_rows]
    wanted = np.unique(np.concatenate([gone, kept_rows]))
    texts = corpus.texts(wanted)
    question = texts.gather(np.searchsorted(wanted, gone))
    other_text[dup_rows] = texts.gather(np.searchsorted(wanted, kept_rows)).to_list()
    removed = (
        pl.DataFrame(
            {
                "id": ids.gather(gone).cast(pl.String),
                "stage": pl.Series([STAGE] * len(gone), dtype=pl.String),
                "reason": pl.Series(reason[gone].tolist(), dtype=pl.String),
                "detail": pl.Series(detail[gone].tolist(), dtype=pl.String),
                "cluster_id": pl.Series(kept_id[gone].tolist(), dtype=pl.String),
                "kept_id": pl.Series(kept_id[gone].tolist(), dtype=pl.String),
                "question": question.cast(pl.String),
                "kept_question": pl.Series(other_text[gone].tolist(), dtype=pl.String),
                "similarity": pl.Series(score[gone], dtype=pl.Float64),
                "template_similarity": pl.Series(tsim[gone], dtype=pl.Float64),
            }
        )
        .with_columns(
            pl.when(pl.col("reason") == "in_previous_release")
            .then(None)
            .otherwise(pl.col("cluster_id"))
            .alias("cluster_id"),
            pl.col("similarity", "template_similarity").fill_nan(None),
            pl.when(pl.col("reason") == "exact_duplicate")
            .then(pl.format("exact duplicate of {}", pl.col("kept_id")))
            .when(pl.col("reason").is_in(["near_duplicate", "template_variant"]))
            .then(
                pl.format(
                    "content Jaccard {}, template Jaccard {} with {}",
                    pl.col("similarity").round(3),
                    pl.col("template_similarity").round(3),
                    pl.col("kept_id"),
                )
            )
            .otherwise(pl.col("detail"))
            .alias("detail"),
        )
        .sort(["reason", "id"])
    )
    counts_by_reason = Counter(reason[gone].tolist())
    sizes = Counter(pl.Series(root[keep | dup]).value_counts()["count"].to_list())
    clock.mark("outputs")
    seconds = time.perf_counter() - clock.t0
    with_template = int((sk.n_content_words < sk.n_words).sum())
    stats = {
        "funnel": {
            "stage": STAGE,
            "rows_in": n,
            "rows_out": int(keep.sum()),
            "removed": {r: int(counts_by_reason.get(r, 0)) for r in REASONS},
        },
        "exact_duplicates": int(counts_by_reason.get("exact_duplicate", 0)),
        "near_duplicates": int(counts_by_reason.get("near_duplicate", 0)),
        "template_variants": {
            "policy": cfg.template_variants,
            "found": variants_found,
            "merged": int(counts_by_reason.get("template_variant", 0)),
            "pairs": int(variant.sum()),
        },
        "in_previous_release": int(counts_by_reason.get("in_previous_release", 0)),
        "contaminated": {name: int(contaminated.get(name, 0)) for name in sorted(eval_sets)},
        "eval_items": {name: len(texts) for name, texts in sorted(eval_sets.items())},
        "cluster_sizes": {str(k): int(sizes[k]) for k in sorted(sizes)},
        "merge_similarity": {
            "near_duplicate": similarity_summary(score[is_near]),
            "template_variant": similarity_summary(score[is_variant]),
            "near_duplicate_template": similarity_summary(tsim[is_near]),
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
            "bands": cfg.lsh()[0],
            "rows": cfg.lsh()[1],
            "threshold": cfg.threshold,
            "template_threshold": cfg.template_threshold,
            "scheme": cfg.scheme,
            "candidate_pairs": int(n_candidates),
            "verified_pairs": int(match.sum()),
        },
        "timing": {
            "seconds": round(seconds, 3),
            "docs_per_s": round(n / seconds, 1) if seconds else None,
            "phases": clock.phases,
        },
    }
    logger.info("dedup: %s", stats["funnel"])
    return DedupResult(keep, removed, stats)
