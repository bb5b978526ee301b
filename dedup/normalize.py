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
import xxhash

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
    """Byte lookup table for ASCII: punctuation and whitespace -> space, other bytes unchanged."""
    lut = np.arange(256, dtype=np.uint8)
    for cp in range(128):
        ch = chr(cp)
        if unicodedata.category(ch).startswith("P") or ch.isspace():
            lut[cp] = _SPACE
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
    if "\x00" in folded:  # NUL separates documents in the bulk buffer
        folded = folded.replace("\x00", " ")
    return folded


def normalize_batch(texts: Sequence[str]) -> NormalizedBatch:
    """Normalize many texts (NFKC, casefold, punctuation -> space, whitespace collapsed)."""
    n_docs = len(texts)
    if n_docs == 0:
        return NormalizedBatch(np.empty(0, np.uint8), np.zeros(1, np.int64))
    joined = "\x00".join(_prefold(t) for t in texts) + "\x00"
    # ASCII punctuation and whitespace become spaces; other bytes (and the NUL separators) stay.
    raw = _ascii_lut()[np.frombuffer(joined.encode("utf-8"), dtype=np.uint8)]
    # Keep a space only after a byte that is neither a space nor a separator (collapses runs and
    # drops leading spaces), then drop a space right before a separator (the trailing one).
    is_space = raw == _SPACE
    prev_blank = np.empty(len(raw), dtype=bool)
    prev_blank[0] = True
    prev_blank[1:] = is_space[:-1] | (raw[:-1] == 0)
    raw = raw[~(is_space & prev_blank)]
    trailing = np.zeros(len(raw), dtype=bool)
    trailing[:-1] = (raw[:-1] == _SPACE) & (raw[1:] == 0)
    raw = raw[~trailing]
    seps = np.flatnonzero(raw == 0)
    offsets = np.zeros(n_docs + 1, dtype=np.int64)
    offsets[1:] = seps - np.arange(n_docs, dtype=np.int64)
    data = raw[raw != 0]
    return NormalizedBatch(data, offsets)


def normalize_text(text: str) -> str:
    """Normalize one text exactly as `normalize_batch` does."""
    return normalize_batch([text]).text(0)


def exact_keys(batch: NormalizedBatch, raw: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """128-bit xxh3 of each normalized document, as (high, low) uint64 arrays.

    A document that normalizes to nothing (only punctuation) is keyed by its stripped raw text
    instead, when `raw` is given, so "?" and "!!!" are not duplicates of each other.
    """
    mv = memoryview(batch.data)
    offs = batch.offsets.tolist()
    digests = [
        xxhash.xxh3_128_intdigest(mv[offs[i] : offs[i + 1]])
        if offs[i + 1] > offs[i] or raw is None
        else xxhash.xxh3_128_intdigest(b"\x00raw:" + raw[i].strip().encode("utf-8"))
        for i in range(len(batch))
    ]
    mask = (1 << 64) - 1
    hi = np.fromiter((d >> 64 for d in digests), dtype=np.uint64, count=len(digests))
    lo = np.fromiter((d & mask for d in digests), dtype=np.uint64, count=len(digests))
    return hi, lo
