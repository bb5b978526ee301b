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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from core.contracts import Funnel
from dedup.audit import CODE, EARLY_SCHEMA, REASONS, STAGE, removed_frame, similarity_summary
from dedup.config import DedupConfig
from dedup.corpus import ONE_PASS_ROWS, Corpus, release_free_memory
from dedup.decontam import DedupInputError, build_eval_index
from dedup.lsh import bucket_pairs, connected_components
from dedup.minhash import MinHashParams, run_chunks
from dedup.normalize import exact_keys, normalize_batch
from dedup.sketch import CrossIndex, Sketch, content_signatures, sketch_corpus, template_counts
from dedup.verify import sketch_rows

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
    cols = [c for c in ("id", "question", "task_name") if c in df.columns]
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


def _merges(sk: Sketch, cand: np.ndarray, workers: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Candidate pairs (indices into `cand`, sorted) from LSH, one band at a time per thread."""
    m = np.int64(len(cand))
    found: list[np.ndarray] = [np.empty(0, np.int64)] * sk.bands

    def work(b: int) -> None:
        found[b] = bucket_pairs(sk.band(b)[cand])  # one int64 per pair: u * m + v

    run_chunks(work, range(sk.bands), workers)
    pairs = np.unique(np.concatenate(found)) if found else np.empty(0, np.int64)
    return pairs // m, pairs % m, len(pairs)


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
    with tempfile.TemporaryDirectory(prefix="dedup-bands-") as band_dir:
        sk = sketch_corpus(corpus, counts, params, cfg, Path(band_dir), eval_index, eval_cross, prev_cross)
        clock.mark("sketch")
        code = np.zeros(n, dtype=np.int8)  # CODE of the reason a row goes; 0 while kept
        early: list[dict[str, Any]] = []  # contaminated rows and rows of an earlier release
        score = np.full(n, np.nan)

        # 1. Contamination: n-gram overlap with, or MinHash similarity to, an evaluation item.
        contaminated: Counter[str] = Counter()
        if eval_index is not None:
            items = [t for texts in eval_sets.values() for t in texts]
            overlaps = [f.rename({"item": "other"}) for f in sk.overlaps if f.height]
            found = [_best_per_row(overlaps, "ngram_overlap"), _best_per_row(sk.eval_hits, "minhash_jaccard")]
            for row, item, value, kind in _best_per_row(found).iter_rows():
                name = eval_index.names[item]
                code[row] = CODE["contaminated"]
                early.append(
                    {
                        "row": row,
                        "kept_question": items[item],
                        "similarity": value,
                        "detail": f"{name}: item {int(eval_index.item_index[item])}, {kind} {value:.3f}",
                    }
                )
                contaminated[name] += 1

        # 2. Rows already released: exact key or content MinHash match with the previous release.
        if prev_cross is not None and prev_keys is not None:
            active = np.flatnonzero(code == 0)
            exact = (
                pl.DataFrame({"row": active, "hi": sk.key_hi[active], "lo": sk.key_lo[active]})
                .join(prev_keys.select("other", "hi", "lo"), on=["hi", "lo"])
                .select("row", "other", pl.lit(1.0).alias("score"))
            )
            near = [h.filter(pl.col("row").is_in(active)) for h in sk.previous_hits if h.height]
            best = _best_per_row([_best_per_row([exact], "exact"), _best_per_row(near, "minhash_jaccard")])
            pids, pq_ = prev_keys["pid"].to_list(), prev_keys["pquestion"].to_list()
            for row, other, value, kind in best.iter_rows():
                code[row] = CODE["in_previous_release"]
                early.append(
                    {
                        "row": row,
                        "kept_id": pids[other],
                        "kept_question": pq_[other],
                        "similarity": value,
                        "detail": f"previous release id {pids[other]}: {kind} {value:.3f}",
                    }
                )
        clock.mark("decontaminate")

        # 3. Exact duplicates of the whole normalised question; the smallest id is kept.
        active = np.flatnonzero(code == 0)
        order = np.lexsort((active, sk.key_lo[active], sk.key_hi[active]))
        hi, lo, rows = sk.key_hi[active][order], sk.key_lo[active][order], active[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])
        rep = np.arange(n)
        rep[rows] = rows[np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))]
        del order, hi, lo, rows, first
        is_exact = rep != np.arange(n)
        clock.mark("exact")

        # 4. Near duplicates on own content: LSH candidates, every one verified.
        cand = np.flatnonzero((code == 0) & ~is_exact & (sk.n_content > 0))
        u, v, n_candidates = _merges(sk, cand, cfg.n_workers)
    clock.mark("lsh")
    # content Jaccard of every candidate, then word multisets only for the pairs that match (one
    # pass for both when the candidate rows are few enough for their word multisets to fit)
    cu, cv = cand[u], cand[v]
    rows = np.unique(np.concatenate([cu, cv]))
    if len(rows) <= ONE_PASS_ROWS:
        rs = sketch_rows(corpus, rows, counts, cfg)
        jc, jt = rs.similarity(cu, cv, cfg.n_workers)
        match = jc >= cfg.threshold
    else:
        content_rows = sketch_rows(corpus, rows, counts, cfg, words=False)
        jc = content_rows.similarity(cu, cv, cfg.n_workers)[0]
        del content_rows
        match = jc >= cfg.threshold
        rs = sketch_rows(corpus, np.unique(np.concatenate([cu[match], cv[match]])), counts, cfg)
        jt = np.zeros(len(u))
        jt[match] = rs.similarity(cu[match], cv[match], cfg.n_workers)[1]
    del rows
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
    is_merged = (code == 0) & ~is_exact & (root != np.arange(n))
    near_root = np.arange(n)
    near_root[cand] = cand[label_near]
    near_root = near_root[rep]
    is_variant = is_merged & (near_root != root)
    is_near = is_merged & ~is_variant
    variants_found = int(
        (label_all != np.arange(len(cand))).sum() - (label_near != np.arange(len(cand))).sum()
    )

    merged_rows = np.flatnonzero(is_merged)
    # a merged row and its cluster's kept row both sit in matching pairs, so both are sketched
    mc, mt = rs.similarity(merged_rows, root[merged_rows], cfg.n_workers)
    del rs
    score[merged_rows] = mc
    tsim = np.full(n, np.nan)
    tsim[merged_rows] = mt
    exact_rows = np.flatnonzero(is_exact)
    score[exact_rows] = 1.0
    tsim[exact_rows] = 1.0
    code[exact_rows] = CODE["exact_duplicate"]
    code[merged_rows] = np.where(is_variant[merged_rows], CODE["template_variant"], CODE["near_duplicate"])
    dup = is_exact | is_merged
    keep = code == 0
    clock.mark("clusters")

    removed = removed_frame(corpus, code, root, score, tsim, pl.DataFrame(early, schema=EARLY_SCHEMA))
    by_code = np.bincount(code, minlength=len(REASONS) + 1)
    counts_by_reason = {r: int(by_code[CODE[r]]) for r in REASONS}
    sizes = Counter(pl.Series(root[keep | dup]).value_counts()["count"].to_list())
    clock.mark("outputs")
    seconds = time.perf_counter() - clock.t0
    with_template = int((sk.n_content_words < sk.n_words).sum())
    stats = {
        "funnel": Funnel(stage=STAGE, rows_in=n, rows_out=int(keep.sum()), removed=counts_by_reason).dump(),
        "exact_duplicates": counts_by_reason["exact_duplicate"],
        "near_duplicates": counts_by_reason["near_duplicate"],
        "template_variants": {
            "policy": cfg.template_variants,
            "found": variants_found,
            "merged": counts_by_reason["template_variant"],
            "pairs": int(variant.sum()),
        },
        "in_previous_release": counts_by_reason["in_previous_release"],
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
    }
    timing = {"seconds": round(seconds, 3), "docs_per_s": round(n / seconds, 1) if seconds else None}
    logger.info("dedup: %s", stats["funnel"])
    return DedupResult(keep, removed, stats, {**timing, "phases": clock.phases})
