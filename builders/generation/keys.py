"""Stable per-prompt hashes, column at a time: cache keys, the seeded teacher fraction, request seeds.

A cache key is sha256 over the JSON list `[id, system_prompt, question, model, revision, sampling]`
exactly as `json.dumps(..., sort_keys=True, ensure_ascii=False)` writes it (caches written by
earlier versions stay valid). The JSON text is built by polars over whole columns; only the sha256
of each row's bytes is a Python call (about 2 µs for a 1 KB prompt).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import polars as pl

from builders.generation.base import SamplingConfig
from core.hashing import unit_hashes


def json_string(expr: pl.Expr) -> pl.Expr:
    """`expr` as a JSON string literal, byte for byte as `json.dumps(ensure_ascii=False)` writes it
    (polars escapes the same characters the same way: tests/test_traces_keys.py)."""
    return pl.struct(expr.alias("v")).struct.json_encode().str.strip_prefix('{"v":').str.strip_suffix("}")


def sha256_hex(texts: pl.Series) -> pl.Series:
    """Hex sha256 of each string's UTF-8 bytes."""
    sha = hashlib.sha256
    return pl.Series(texts.name, [sha(t.encode()).hexdigest() for t in texts.to_list()], dtype=pl.String)


def selected_mask(ids: pl.Series, fraction: float, seed: int) -> pl.Series:
    """Boolean mask: a stable, seeded `fraction` of `ids` (a row's choice ignores the other rows)."""
    if fraction >= 1.0:
        return pl.Series(np.ones(len(ids), dtype=bool))
    # the bound as Python computes `fraction * 2**64` (a float), compared exactly
    bound = fraction * 2**64
    hashes = unit_hashes(seed, ids)
    below = hashes.astype(np.float64) < bound
    edge = np.abs(hashes.astype(np.float64) - bound) <= 4096.0  # float rounding near the bound
    if edge.any():
        below[edge] = [int(h) < bound for h in hashes[edge]]
    return pl.Series(below)


def request_seeds(sampling_seed: int, ids: pl.Series) -> pl.Series:
    """Per-request sampling seeds: the same prompt gets the same seed whatever the batch."""
    return pl.Series((unit_hashes(sampling_seed, ids) & np.uint64(0x7FFFFFFF)).astype(np.int64))


def cache_keys(frame: pl.DataFrame, model: str, revision: str, sampling: SamplingConfig) -> pl.Series:
    """The cache key of each row of `frame` (columns id, system_prompt, question)."""
    tail = json.dumps([model, revision, sampling.model_dump(mode="json")], sort_keys=True, ensure_ascii=False)
    payload = frame.select(
        pl.concat_str(
            pl.lit("["),
            json_string(pl.col("id")),
            pl.lit(", "),
            json_string(pl.col("system_prompt")),
            pl.lit(", "),
            json_string(pl.col("question")),
            pl.lit(", " + tail[1:]),
        ).alias("key")
    )["key"]
    return sha256_hex(payload)
