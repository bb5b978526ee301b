"""LSH banding (buckets of equal band keys, compiled) and union-find clustering."""

from __future__ import annotations

import functools

import numpy as np
import polars as pl
from datasketch.lsh import _optimal_param

from dedup.set_kernels import band_pairs, signature_bands


def lsh_params(
    num_perm: int,
    threshold: float,
    bands: int | None = None,
    rows: int | None = None,
    false_negative_weight: float = 0.5,
) -> tuple[int, int]:
    """(bands, rows): explicit ones must multiply to num_perm; else datasketch's optimum."""
    if bands is not None or rows is not None:
        if bands is None or rows is None or bands * rows != num_perm:
            raise ValueError(f"bands x rows must equal num_perm: {bands} x {rows} != {num_perm}")
        return bands, rows
    return _optimal(threshold, num_perm, false_negative_weight)


@functools.cache
def _optimal(threshold: float, num_perm: int, false_negative_weight: float) -> tuple[int, int]:
    # datasketch integrates the error curves for every (bands, rows): ~20 ms, asked for several times a run
    return _optimal_param(threshold, num_perm, 1.0 - false_negative_weight, false_negative_weight)


def band_keys(sig: np.ndarray, bands: int, rows: int, docs: np.ndarray | None = None) -> np.ndarray:
    """(len(docs), bands) uint64 key of each band's `rows` signature values, salted by band index."""
    docs = np.arange(sig.shape[0]) if docs is None else np.asarray(docs, dtype=np.int64)
    return signature_bands(sig, bands, rows, docs)


def _band_frame(keys: np.ndarray, docs: np.ndarray) -> pl.DataFrame:
    """One row per (document, band): the band key (band index mixed in) and the document."""
    return pl.DataFrame({"key": keys.reshape(-1), "doc": np.repeat(docs.astype(np.int64), keys.shape[1])})


def bucket_pairs(keys: np.ndarray) -> np.ndarray:
    """Pairs of positions sharing a key in one band, as `u * len(keys) + v` (see `band_pairs`)."""
    order = np.argsort(keys)  # not stable: `band_pairs` orders each pair itself
    ordered = keys[order]
    bounds = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1], [True])))
    size = np.diff(bounds)
    total = int(np.where(size <= 16, size * (size - 1) // 2, size - 1).sum())
    return band_pairs(order, bounds, total)


def candidate_pairs(keys: np.ndarray, docs: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Unique (u, v), u < v, of documents sharing a band key, one band at a time.

    Within a band, a bucket of up to 16 documents gives all its pairs, a larger one a star to its
    smallest document (`dedup.kernels.band_pairs`).
    """
    if docs is None:
        docs = np.arange(keys.shape[0], dtype=np.int64)
    m = np.int64(keys.shape[0])
    found = [bucket_pairs(np.ascontiguousarray(keys[:, b])) for b in range(keys.shape[1])]
    codes = np.unique(np.concatenate(found)) if found else np.empty(0, np.int64)
    return docs[codes // m], docs[codes % m]


def cross_pairs(keys_a: np.ndarray, keys_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique (i, j) with row i of `keys_a` and row j of `keys_b` sharing a band key."""
    fa = _band_frame(keys_a, np.arange(keys_a.shape[0])).rename({"doc": "i"})
    fb = _band_frame(keys_b, np.arange(keys_b.shape[0])).rename({"doc": "j"})
    pairs = fa.join(fb, on="key").select("i", "j").unique().sort(["i", "j"])
    return pairs["i"].to_numpy(), pairs["j"].to_numpy()


def estimated_jaccard(
    sig_a: np.ndarray, ia: np.ndarray, sig_b: np.ndarray, ib: np.ndarray, block: int = 16384
) -> np.ndarray:
    """Fraction of equal signature values for each pair (sig_a[ia[k]], sig_b[ib[k]])."""
    out = np.empty(len(ia), dtype=np.float64)
    for lo in range(0, len(ia), block):
        hi = min(lo + block, len(ia))
        out[lo:hi] = (sig_a[ia[lo:hi]] == sig_b[ib[lo:hi]]).mean(axis=1)
    return out
