"""Stable per-row hashes: a seeded uniform per id that ignores every other row."""

from __future__ import annotations

import hashlib

import numpy as np
import polars as pl


def unit_hashes(seed: int | str, ids: pl.Series) -> np.ndarray:
    """The first 8 bytes (big-endian) of sha256(f"{seed}:{id}") for each id, as uint64."""
    sha = hashlib.sha256
    prefix = f"{seed}:"
    digests = b"".join(sha((prefix + i).encode()).digest()[:8] for i in ids.to_list())
    return np.frombuffer(digests, dtype=">u8").astype(np.uint64)


def unit_uniforms(seed: int | str, ids: pl.Series) -> np.ndarray:
    """A uniform in [0, 1) per id from `unit_hashes` (53 bits, as a float64 holds them)."""
    return (unit_hashes(seed, ids) >> np.uint64(11)).astype(np.float64) * 2.0**-53
