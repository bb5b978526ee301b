"""The dedup stage's logic over polars frames: decontaminate, then exact and near duplicates."""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from tqdm import tqdm

from dedup.config import DedupConfig
from dedup.decontam import DedupInputError, EvalIndex, build_eval_index, overlap_matches
from dedup.lsh import (
    band_keys,
    candidate_pairs,
    connected_components,
    cross_pairs,
    estimated_jaccard,
    exact_jaccard,
    lsh_params,
)
from dedup.minhash import MinHashParams, batch_shingles, run_chunks, signatures_from_shingles
from dedup.normalize import exact_keys, normalize_batch

logger = logging.getLogger(__name__)

STAGE = "dedup"
REASONS = ("contaminated", "in_previous_release", "exact_duplicate", "near_duplicate")


@dataclass
class Sketches:
    """Per-row exact keys, MinHash signatures and shingle counts (plus eval overlap hits)."""

    key_hi: np.ndarray
    key_lo: np.ndarray
    sig: np.ndarray
    n_shingles: np.ndarray
    overlaps: pl.DataFrame = field(default_factory=pl.DataFrame)


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


def sketch(
    texts: pl.Series,
    params: MinHashParams,
    cfg: DedupConfig,
    index: EvalIndex | None = None,
    desc: str = "sketch",
) -> Sketches:
    """Normalize, hash and sign all texts in chunks over threads."""
    n = len(texts)
    out = Sketches(
        np.empty(n, np.uint64),
        np.empty(n, np.uint64),
        np.empty((n, params.num_perm), np.uint32),
        np.empty(n, np.int64),
    )
    # chunks of at most chunk_size documents and about chunk_bytes of text keep every array of a
    # chunk small enough to stay in cache and to be reused by the allocator
    lengths = texts.str.len_bytes().fill_null(0).to_numpy()
    starts = chunk_starts(lengths, cfg.chunk_size, cfg.chunk_bytes)
    ends = [*starts[1:], n]
    hits: list[pl.DataFrame | None] = [None] * len(starts)
    bar = tqdm(total=n, desc=desc, unit="doc", disable=n < 100_000)

    def work(ci: int) -> None:
        lo, hi = starts[ci], ends[ci]
        raw = texts.slice(lo, hi - lo).to_list()
        batch = normalize_batch(raw)
        out.key_hi[lo:hi], out.key_lo[lo:hi] = exact_keys(batch, raw)
        sh = batch_shingles(batch, params.ngram)
        out.sig[lo:hi] = signatures_from_shingles(sh, params)
        out.n_shingles[lo:hi] = sh.counts()
        if index is not None:
            dsh = sh if cfg.decontam_ngram == params.ngram else batch_shingles(batch, cfg.decontam_ngram)
            hits[ci] = overlap_matches(dsh, index, cfg.decontam_overlap, lo)
        bar.update(hi - lo)

    run_chunks(work, range(len(starts)), cfg.n_workers)
    bar.close()
    if index is not None:
        out.overlaps = pl.concat([h for h in hits if h is not None]) if hits else pl.DataFrame()
    return out


def verify_exact(texts: pl.Series, u: np.ndarray, v: np.ndarray, cfg: DedupConfig) -> np.ndarray:
    """Exact shingle-set Jaccard of pairs (texts[u[k]], texts[v[k]]), in chunks over threads."""
    out = np.empty(len(u), dtype=np.float64)
    block = 512  # pairs per call: keeps the shingle arrays of one call near chunk_bytes

    def work(lo: int) -> None:
        out[lo : lo + block] = exact_jaccard(texts, u[lo : lo + block], v[lo : lo + block], cfg.ngram)

    run_chunks(work, range(0, len(u), block), cfg.n_workers)
    return out


def chunk_starts(lengths: np.ndarray, max_docs: int, max_bytes: int) -> list[int]:
    """Start rows of consecutive chunks holding <= max_docs rows and about <= max_bytes of text."""
    starts = [0]
    csum = np.cumsum(lengths)
    n = len(lengths)
    while starts[-1] < n:
        lo = starts[-1]
        base = csum[lo - 1] if lo else 0
        hi = int(np.searchsorted(csum, base + max_bytes, side="right"))
        starts.append(min(max(hi, lo + 1), lo + max_docs, n))
    return starts[:-1]


def _best_per_row(frames: list[pl.DataFrame]) -> pl.DataFrame:
    frames = [f for f in frames if f.height]
    if not frames:
        return pl.DataFrame(
            schema={"row": pl.Int64, "other": pl.Int64, "score": pl.Float64, "kind": pl.String}
        )
    return (
        pl.concat(frames)
        .sort(["row", "score", "other", "kind"], descending=[False, True, False, False])
        .unique("row", keep="first", maintain_order=True)
    )


def _minhash_cross(
    sig_a: np.ndarray,
    ok_a: np.ndarray,
    sig_b: np.ndarray,
    ok_b: np.ndarray,
    threshold: float,
    cfg: DedupConfig,
) -> pl.DataFrame:
    """Pairs (row of a, row of b) with estimated Jaccard >= threshold, found by LSH."""
    bands, rows = lsh_params(cfg.num_perm, threshold, false_negative_weight=cfg.false_negative_weight)
    ia_all, ib_all = np.flatnonzero(ok_a), np.flatnonzero(ok_b)
    if not len(ia_all) or not len(ib_all):
        return pl.DataFrame(schema={"row": pl.Int64, "other": pl.Int64, "score": pl.Float64})
    i, j = cross_pairs(band_keys(sig_a, bands, rows, ia_all), band_keys(sig_b, bands, rows, ib_all))
    ia, ib = ia_all[i], ib_all[j]
    score = estimated_jaccard(sig_a, ia, sig_b, ib)
    sel = score >= threshold
    return pl.DataFrame({"row": ia[sel], "other": ib[sel], "score": score[sel]})


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
    result = dedup_rows(df.select("id", "question"), cfg, seed, eval_sets, previous, source)
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
    """The decisions for `id`, `question` rows; `keep` follows the rows sorted by id."""
    t0 = time.perf_counter()
    phases: dict[str, float] = {}

    def mark(name: str) -> None:
        phases[name] = max(0.0, round(time.perf_counter() - t0 - sum(phases.values()), 3))

    check_questions(df, source)
    df = sort_by_id(df)
    n = df.height
    ids = df["id"].to_numpy()
    params = MinHashParams(cfg.num_perm, seed, cfg.ngram, cfg.scheme)
    eval_sets = eval_sets or {}
    index = build_eval_index(eval_sets, params, cfg.decontam_ngram) if eval_sets else None
    texts = df["question"]
    sk = sketch(texts, params, cfg, index, desc="dedup")
    mark("sketch")
    has_sh = sk.n_shingles > 0
    reason = np.full(n, "", dtype=object)
    detail = np.full(n, "", dtype=object)
    kept_id = np.full(n, None, dtype=object)

    # 1. Contamination: n-gram overlap with, or MinHash similarity to, an evaluation item.
    contaminated: Counter[str] = Counter()
    if index is not None:
        found = [sk.overlaps.rename({"item": "other"}).with_columns(pl.lit("ngram_overlap").alias("kind"))]
        if cfg.decontam_threshold is not None:
            mh = _minhash_cross(sk.sig, has_sh, index.signatures, index.nonempty, cfg.decontam_threshold, cfg)
            found.append(mh.with_columns(pl.lit("minhash_jaccard").alias("kind")))
        for row, item, score, kind in _best_per_row(found).iter_rows():
            name = index.names[item]
            reason[row] = "contaminated"
            detail[row] = f"{name}: item {int(index.item_index[item])}, {kind} {score:.3f}"
            contaminated[name] += 1

    mark("decontaminate")

    # 2. Rows already released: exact key or MinHash match with the previous release.
    if previous is not None:
        check_questions(previous, "previous release")
        prev = previous.sort("id")
        pids = prev["id"].to_list()
        psk = sketch(prev["question"], params, cfg, desc="previous release")
        active = reason == ""
        exact = (
            pl.DataFrame({"row": np.flatnonzero(active), "hi": sk.key_hi[active], "lo": sk.key_lo[active]})
            .join(
                pl.DataFrame({"other": np.arange(len(pids)), "hi": psk.key_hi, "lo": psk.key_lo}),
                on=["hi", "lo"],
            )
            .select("row", "other", pl.lit(1.0).alias("score"), pl.lit("exact").alias("kind"))
        )
        near = _minhash_cross(sk.sig, has_sh & active, psk.sig, psk.n_shingles > 0, cfg.threshold, cfg)
        near = near.with_columns(pl.lit("minhash_jaccard").alias("kind"))
        for row, other, score, kind in _best_per_row([exact, near]).iter_rows():
            reason[row] = "in_previous_release"
            kept_id[row] = pids[other]
            detail[row] = f"previous release id {pids[other]}: {kind} {score:.3f}"

    mark("previous_release")

    # 3. Exact duplicates of the normalized question; the smallest id is kept.
    active = np.flatnonzero(reason == "")
    groups = pl.DataFrame({"row": active, "hi": sk.key_hi[active], "lo": sk.key_lo[active]}).with_columns(
        pl.col("row").min().over(["hi", "lo"]).alias("rep")
    )
    rep = np.arange(n)
    rep[groups["row"].to_numpy()] = groups["rep"].to_numpy()
    is_exact = rep != np.arange(n)

    mark("exact")

    # 4. Near duplicates: LSH candidates, verified, clustered by union-find.
    bands, rows = cfg.lsh()
    cand = np.flatnonzero((reason == "") & ~is_exact & has_sh)
    u, v = candidate_pairs(band_keys(sk.sig, bands, rows, cand))
    n_candidates = len(u)
    if cfg.verify != "none" and len(u):
        score = estimated_jaccard(sk.sig, cand[u], sk.sig, cand[v])
        if cfg.verify == "exact":
            # the estimate decides clear cases; shingle sets decide those near the threshold
            unsure = np.flatnonzero(np.abs(score - cfg.threshold) < cfg.verify_margin)
            score[unsure] = verify_exact(texts, cand[u[unsure]], cand[v[unsure]], cfg)
        u, v = u[score >= cfg.threshold], v[score >= cfg.threshold]
    mark("lsh_verify")
    label = connected_components(len(cand), u, v)
    root = np.arange(n)
    root[cand] = cand[label]
    root = root[rep]  # an exact duplicate joins its representative's cluster
    is_near = (reason == "") & ~is_exact & (root != np.arange(n))

    for row in np.flatnonzero(is_exact):
        reason[row] = "exact_duplicate"
        detail[row] = f"exact duplicate of {ids[rep[row]]}"
    near_rows = np.flatnonzero(is_near)
    jac = estimated_jaccard(sk.sig, near_rows, sk.sig, root[near_rows])
    for row, j in zip(near_rows, jac, strict=True):
        reason[row] = "near_duplicate"
        detail[row] = f"estimated Jaccard {j:.3f} with {ids[root[row]]}"
    dup = is_exact | is_near
    kept_id[dup] = ids[root[dup]]
    keep = reason == ""

    cluster_of = pl.Series(root[keep | dup])
    sizes = Counter(cluster_of.value_counts()["count"].to_list())
    gone = np.flatnonzero(~keep)
    removed = pl.DataFrame(
        {
            "id": ids[gone].astype(str),
            "stage": [STAGE] * len(gone),
            "reason": reason[gone].astype(str),
            "detail": detail[gone].astype(str),
            "cluster_id": pl.Series(kept_id[gone].tolist(), dtype=pl.String),
            "kept_id": pl.Series(kept_id[gone].tolist(), dtype=pl.String),
        },
        schema={k: pl.String for k in ("id", "stage", "reason", "detail", "cluster_id", "kept_id")},
    )
    removed = removed.with_columns(
        pl.when(pl.col("reason") == "in_previous_release")
        .then(None)
        .otherwise(pl.col("cluster_id"))
        .alias("cluster_id")
    ).sort(["reason", "id", "detail"], nulls_last=True)
    counts = Counter(reason[gone].tolist())
    mark("clusters_outputs")
    seconds = time.perf_counter() - t0
    stats = {
        "funnel": {
            "stage": STAGE,
            "rows_in": n,
            "rows_out": int(keep.sum()),
            "removed": {r: int(counts.get(r, 0)) for r in REASONS},
        },
        "exact_duplicates": int(counts.get("exact_duplicate", 0)),
        "near_duplicates": int(counts.get("near_duplicate", 0)),
        "in_previous_release": int(counts.get("in_previous_release", 0)),
        "contaminated": {name: int(contaminated.get(name, 0)) for name in sorted(eval_sets)},
        "eval_items": {name: len(texts) for name, texts in sorted(eval_sets.items())},
        "cluster_sizes": {str(k): int(sizes[k]) for k in sorted(sizes)},
        "lsh": {
            "ngram": cfg.ngram,
            "num_perm": cfg.num_perm,
            "bands": bands,
            "rows": rows,
            "threshold": cfg.threshold,
            "scheme": cfg.scheme,
            "verify": cfg.verify,
            "candidate_pairs": int(n_candidates),
            "verified_pairs": len(u),
        },
        "timing": {
            "seconds": round(seconds, 3),
            "docs_per_s": round(n / seconds, 1) if seconds else None,
            "phases": phases,
        },
    }
    logger.info("dedup: %s", stats["funnel"])
    return DedupResult(keep, removed, stats)
