"""Text normalization for duplicate detection, in bulk over UTF-8 buffers.

A question is normalized by Unicode NFKC, case folding, replacing punctuation (Unicode category
P*) with spaces, and collapsing whitespace to single spaces with none at either end. The bulk
path returns one contiguous UTF-8 buffer plus offsets (the Arrow layout), so shingling and
hashing run as numpy operations over all documents of a chunk at once.
"""

from __future__ import annotations

import functools
import sys
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from dedup.kernels import collapse

_SPACE = 32


@functools.cache
def _unicode_table() -> dict[int, int]:
    """str.translate table: every punctuation or whitespace code point -> space."""
    table: dict[int, int] = {}
    for cp in range(sys.maxunicode + 1):
        ch = chr(cp)
        if unicodedata.category(ch).startswith("P") or ch.isspace():
            table[cp] = _SPACE
    return table


@functools.cache
def _ascii_lut() -> np.ndarray:
    """Byte lookup table: ASCII punctuation, whitespace and NUL -> space, A-Z -> a-z, other bytes
    unchanged."""
    lut = np.arange(256, dtype=np.uint8)
    lut[ord("A") : ord("Z") + 1] += 32
    for cp in range(128):
        ch = chr(cp)
        if unicodedata.category(ch).startswith("P") or ch.isspace():
            lut[cp] = _SPACE
    lut[0] = _SPACE  # NUL is a control character, not text
    return lut


@dataclass(frozen=True)
class NormalizedBatch:
    """Normalized documents as one UTF-8 buffer: doc i is `data[offsets[i]:offsets[i + 1]]`."""

    data: np.ndarray  # uint8
    offsets: np.ndarray  # int64, len(docs) + 1, offsets[0] == 0

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def text(self, i: int) -> str:
        """Document `i` as a string (for tests and error messages)."""
        return self.data[self.offsets[i] : self.offsets[i + 1]].tobytes().decode("utf-8")

    def lengths(self) -> np.ndarray:
        """Byte length of each normalized document."""
        return np.diff(self.offsets)


def _prefold(text: str) -> str:
    # NFKC leaves ASCII unchanged
    folded = text.casefold() if text.isascii() else unicodedata.normalize("NFKC", text).casefold()
    if not folded.isascii():
        folded = folded.translate(_unicode_table())
    return folded


def normalize_arrow(texts: pa.Array | pa.ChunkedArray) -> NormalizedBatch:
    """Normalize an Arrow string array (nulls normalize to nothing).

    For ASCII texts NFKC is the identity and casefold is lowercase, which the compiled pass does
    with its byte table; only the other texts go through Python's `unicodedata` first. One pass
    then lowercases, maps punctuation and whitespace to spaces and collapses them.
    """
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks() if texts.num_chunks else pa.array([], pa.large_string())
    texts = texts.cast(pa.large_string())
    if len(texts) == 0:
        return NormalizedBatch(np.empty(0, np.uint8), np.zeros(1, np.int64))
    if texts.null_count:
        texts = texts.fill_null("")
    other = np.flatnonzero(~pc.string_is_ascii(texts).to_numpy(zero_copy_only=False))
    if len(other):
        slow = pa.array([_prefold(t) for t in texts.take(other).to_pylist()], pa.large_string())
        mask = np.zeros(len(texts), dtype=bool)
        mask[other] = True
        texts = pc.replace_with_mask(texts, pa.array(mask), slow)
    _, offs, data = texts.buffers()
    offsets = np.frombuffer(offs, dtype=np.int64)[texts.offset : texts.offset + len(texts) + 1]
    raw = np.frombuffer(data, dtype=np.uint8) if data is not None else np.empty(0, np.uint8)
    if offsets[-1] > len(raw):  # a cast slice's data buffer starts at its first row: rebase it
        texts = pa.concat_arrays([texts])
        _, offs, data = texts.buffers()
        offsets = np.frombuffer(offs, dtype=np.int64)[: len(texts) + 1]
        raw = np.frombuffer(data, dtype=np.uint8) if data is not None else np.empty(0, np.uint8)
    return NormalizedBatch(*collapse(raw, offsets, _ascii_lut()))


def byte_lengths(texts: pa.Array) -> np.ndarray:
    """UTF-8 byte length of each text (0 for a null)."""
    return pc.binary_length(texts).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)


def blank_questions(texts: pa.Array) -> np.ndarray:
    """Whether each text is null or only whitespace."""
    # utf8_is_space: non-empty and whitespace only (Arrow's predicate of utf8_trim_whitespace); it
    # stops at a text's first other character, where trimming would copy every text
    empty = pc.or_kleene(pc.equal(pc.binary_length(texts), 0), pc.utf8_is_space(texts))
    return pc.or_kleene(pc.is_null(texts), empty).fill_null(True).to_numpy(zero_copy_only=False)


def normalize_batch(texts: Sequence[str]) -> NormalizedBatch:
    """Normalize many texts (NFKC, casefold, punctuation -> space, whitespace collapsed)."""
    return normalize_arrow(pa.array(list(texts), pa.large_string()))


def normalize_text(text: str) -> str:
    """Normalize one text exactly as `normalize_batch` does."""
    return normalize_batch([text]).text(0)


def exact_keys(
    batch: NormalizedBatch, raw: Sequence[str] | pa.Array | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """128-bit xxh3 of each normalized document, as (high, low) uint64 arrays.

    A document that normalizes to nothing (only punctuation) is keyed by its stripped raw text
    instead, when `raw` is given, so "?" and "!!!" are not duplicates of each other.
    """
    mv = memoryview(batch.data)
    offs = batch.offsets.tolist()
    digests = [xxhash.xxh3_128_intdigest(mv[offs[i] : offs[i + 1]]) for i in range(len(batch))]
    if raw is not None:
        for i in np.flatnonzero(batch.lengths() == 0).tolist():
            text = raw[i].as_py() if isinstance(raw, pa.Array) else raw[i]
            digests[i] = xxhash.xxh3_128_intdigest(b"\x00raw:" + (text or "").strip().encode("utf-8"))
    mask = (1 << 64) - 1
    hi = np.fromiter((d >> 64 for d in digests), dtype=np.uint64, count=len(digests))
    lo = np.fromiter((d & mask for d in digests), dtype=np.uint64, count=len(digests))
    return hi, lo
