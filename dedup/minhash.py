"""Bulk MinHash signatures, value-for-value equal to `datasketch.MinHash`.

A document's shingles are its word n-grams (the UTF-8 bytes of `n` consecutive words of the
normalized text joined by single spaces; a document with fewer than `n` words is one shingle).
Each shingle is hashed by `shingle_hash`, a 32-bit hash that is a polynomial over the shingle's
bytes modulo 2^64 finished with the MurmurHash3 64-bit mixer. Because it is a polynomial, the hash
of every shingle of every document in a chunk comes from two prefix sums over the chunk's byte
buffer, with no Python loop per shingle. `shingle_hash` is an ordinary Python function too: pass
it as `hashfunc` to `datasketch.MinHash` and `update()` with the same shingles to get the same
`hashvalues` (see `to_datasketch` and `datasketch_minhash`).

The permutations are datasketch's own (taken from a `datasketch.MinHash` of the same `num_perm`,
`seed` and `scheme`), applied to every shingle of a chunk in one compiled loop
(`dedup.kernels.minhash`). Chunks run in threads (the kernels release the GIL).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np
from datasketch import MinHash

from dedup.kernels import word_bounds
from dedup.normalize import NormalizedBatch, normalize_batch, normalize_text
from dedup.set_kernels import minhash

Scheme = Literal["affine32", "legacy"]

_MASK64 = (1 << 64) - 1
_BASE = 0x9E3779B97F4A7C15  # odd, so it has an inverse modulo 2^64
_BASE_INV = pow(_BASE, -1, 1 << 64)
_LEN_MIX = 0xC2B2AE3D27D4EB4F


def _fmix64_int(x: int) -> int:
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & _MASK64
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & _MASK64
    return x ^ (x >> 33)


def fmix64(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer over a uint64 array (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(33))
    x *= np.uint64(0xFF51AFD7ED558CCD)
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xC4CEB9FE1A85EC53)
    x ^= x >> np.uint64(33)
    return x


def shingle_hash64(data: bytes | str) -> int:
    """64-bit hash of one shingle (the bulk path computes the same values)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    h = 0
    for byte in data:
        h = (h * _BASE + byte + 1) & _MASK64
    return _fmix64_int((h + len(data) * _LEN_MIX) & _MASK64)


def shingle_hash(data: bytes | str) -> int:
    """32-bit shingle hash: pass as `hashfunc` to `datasketch.MinHash` for interoperability."""
    return shingle_hash64(data) >> 32


def shingles(text: str, n: int) -> list[bytes]:
    """The word n-gram shingles of `text` after normalization, as UTF-8 bytes."""
    words = normalize_text(text).split(" ")
    if words == [""]:
        return []
    if len(words) < n:
        return [" ".join(words).encode("utf-8")]
    return [" ".join(words[i : i + n]).encode("utf-8") for i in range(len(words) - n + 1)]


_pow_lock = threading.Lock()
_pow_cache: dict[int, np.ndarray] = {}


def _powers(base: int, length: int) -> np.ndarray:
    """base**i mod 2^64 for i < length (cached, grown geometrically)."""
    with _pow_lock:
        table = _pow_cache.get(base)
        if table is None or len(table) < length:
            size = max(length, 1 << 20, 0 if table is None else 2 * len(table))
            table = np.full(size, base, dtype=np.uint64)
            table[0] = 1
            np.multiply.accumulate(table, out=table)
            _pow_cache[base] = table
    return table[:length]


@dataclass(frozen=True)
class Shingles:
    """The shingles of a batch: `doc[i]` is the document of shingle i, `hash64[i]` its hash."""

    doc: np.ndarray  # int64, non-decreasing
    hash64: np.ndarray  # uint64
    n_docs: int

    def counts(self) -> np.ndarray:
        """Number of shingles per document."""
        return np.bincount(self.doc, minlength=self.n_docs)


@dataclass(frozen=True)
class Words:
    """Word boundaries of a normalized batch: word j spans bytes `[starts[j], ends[j])`."""

    starts: np.ndarray  # int64
    ends: np.ndarray  # int64
    first: np.ndarray  # int64, n_docs + 1: words of doc i are first[i]:first[i + 1]
    at_start: np.ndarray  # uint64 prefix sum of the polynomial hash at starts[j] (see `range_hashes`)
    at_end: np.ndarray  # uint64 prefix sum at ends[j]
    n_bytes: int  # bytes of the batch's text

    @property
    def n_docs(self) -> int:
        return len(self.first) - 1

    def counts(self) -> np.ndarray:
        """Words per document."""
        return np.diff(self.first)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(starts, ends, first, at_start, at_end, powers): the `words` argument of the `dedup.kernels`."""
        return self.starts, self.ends, self.first, self.at_start, self.at_end, powers(self.n_bytes)

    def doc(self) -> np.ndarray:
        """The document of each word."""
        return np.repeat(np.arange(self.n_docs, dtype=np.int64), self.counts())


def batch_words(batch: NormalizedBatch) -> Words:
    """Word boundaries and hash prefix sums of every document of `batch` (one compiled pass)."""
    # prefix[j] = sum_{i<j} (byte_i + 1) * BASE^-i; a range [s, e) hashes to
    # BASE^(e-1) * (prefix[e] - prefix[s]) = sum_{s<=i<e} (byte_i + 1) * BASE^(e-1-i). Shingles
    # start and end on word bounds, so prefix is kept only there (two values a word, not 8 bytes a byte).
    n = len(batch.data)
    return Words(*word_bounds(batch.data, batch.offsets, _powers(_BASE_INV, n)), n)


def powers(length: int) -> np.ndarray:
    """BASE**i mod 2^64 for i < length: what turns prefix sums into range hashes."""
    return _powers(_BASE, length)


def range_hashes(words: Words, first_word: np.ndarray, last_word: np.ndarray) -> np.ndarray:
    """`shingle_hash64` of the text from word `first_word[k]` through word `last_word[k]`."""
    s = words.starts[first_word]
    e = words.ends[last_word]
    h = powers(words.n_bytes)[e - 1] * (words.at_end[last_word] - words.at_start[first_word])
    h += (e - s).astype(np.uint64) * np.uint64(_LEN_MIX)
    return fmix64(h)


def ngram_spans(words: Words, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(doc, first word, last word) of every word n-gram; a doc of fewer than n words is one span."""
    m = words.counts()
    k = np.where(m >= n, m - n + 1, np.minimum(m, 1))
    total = int(k.sum())
    doc = np.repeat(np.arange(words.n_docs, dtype=np.int64), k)
    k_first = np.zeros(words.n_docs + 1, dtype=np.int64)
    np.cumsum(k, out=k_first[1:])
    first_word = words.first[doc] + (np.arange(total, dtype=np.int64) - k_first[doc])
    last_word = np.minimum(first_word + (n - 1), words.first[doc + 1] - 1)
    return doc, first_word, last_word


def batch_shingles(batch: NormalizedBatch, n: int, words: Words | None = None) -> Shingles:
    """Hash every word n-gram of every document of `batch` (vectorised; equals `shingle_hash64`)."""
    if len(batch.data) == 0:
        return Shingles(np.empty(0, np.int64), np.empty(0, np.uint64), len(batch))
    words = words if words is not None else batch_words(batch)
    doc, first_word, last_word = ngram_spans(words, n)
    return Shingles(doc, range_hashes(words, first_word, last_word), len(batch))


@dataclass(frozen=True)
class MinHashParams:
    """What fixes a signature: permutations, seed, scheme and shingle size."""

    num_perm: int = 128
    seed: int = 1
    ngram: int = 5
    scheme: Scheme = "affine32"

    @functools.cached_property
    def permutations(self) -> tuple[np.ndarray, np.ndarray]:
        """datasketch's permutation parameters (a, b) for this num_perm, seed and scheme."""
        a, b = MinHash(num_perm=self.num_perm, seed=self.seed, scheme=self.scheme).permutations
        dtype = np.uint32 if self.scheme == "affine32" else np.uint64
        return np.asarray(a, dtype=dtype), np.asarray(b, dtype=dtype)


def signatures_from_shingles(sh: Shingles, params: MinHashParams) -> np.ndarray:
    """(n_docs, num_perm) uint32 signature matrix; a document with no shingles gets all 2^32-1."""
    a, b = params.permutations
    h32 = (sh.hash64 >> np.uint64(32)).astype(np.uint32)
    legacy = params.scheme == "legacy"
    return minhash(sh.doc, h32, a.astype(np.uint64), b.astype(np.uint64), sh.n_docs, legacy)


def signatures(batch: NormalizedBatch, params: MinHashParams) -> np.ndarray:
    """Signature matrix of a normalized batch."""
    return signatures_from_shingles(batch_shingles(batch, params.ngram), params)


def bulk_signatures(
    texts: Sequence[str], params: MinHashParams, *, chunk_size: int = 4096, workers: int = 2
) -> np.ndarray:
    """Signatures of raw texts, normalized and hashed in chunks over `workers` threads."""
    out = np.empty((len(texts), params.num_perm), dtype=np.uint32)

    def work(lo: int) -> None:
        hi = min(lo + chunk_size, len(texts))
        out[lo:hi] = signatures(normalize_batch(texts[lo:hi]), params)

    run_chunks(work, range(0, len(texts), chunk_size), workers)
    return out


def run_chunks(fn: Callable[[int], None], starts: Sequence[int] | range, workers: int) -> None:
    """Call `fn(start)` for every start, over `workers` threads (results written by `fn`)."""
    if workers <= 1:
        for s in starts:
            fn(s)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(fn, starts):
            pass


def to_datasketch(row: np.ndarray, params: MinHashParams) -> MinHash:
    """Wrap one signature row as a `datasketch.MinHash` (for `MinHashLSH` and existing indexes)."""
    dtype = np.uint32 if params.scheme == "affine32" else np.uint64
    return MinHash(
        seed=params.seed,
        hashfunc=shingle_hash,
        hashvalues=np.asarray(row, dtype=dtype),
        permutations=params.permutations,
        scheme=params.scheme,
    )


def datasketch_minhash(text: str, params: MinHashParams) -> MinHash:
    """The reference: datasketch's own `MinHash`, updated one shingle at a time."""
    m = MinHash(num_perm=params.num_perm, seed=params.seed, hashfunc=shingle_hash, scheme=params.scheme)
    for sh in shingles(text, params.ngram):
        m.update(sh)
    return m
