"""Orca's stratified sampling: pick a task uniformly, then a query from it without replacement."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import polars as pl


def add_ids(df: pl.DataFrame) -> pl.DataFrame:
    """Add the `id` column: sha256 of submix, task, template type and question, each followed by
    a unit separator (the first 24 hex characters)."""
    keys = df.select(
        pl.concat_str(["submix", "task_name", "template_type", "question"], separator="\x1f") + "\x1f"
    ).to_series()
    sha = hashlib.sha256
    ids = [sha(k.encode("utf-8")).hexdigest()[:24] for k in keys.to_list()]
    return df.with_columns(pl.Series("id", ids, dtype=pl.String))


def allocate(counts: np.ndarray, budget: int, rng: np.random.Generator) -> np.ndarray:
    """How many queries each task gives when a task is drawn uniformly per query until `budget`.

    Tasks that run dry drop out of the draw (a draw of an exhausted task is redrawn), which is the
    sequential procedure in distribution; it is computed in rounds of vectorised draws.
    """
    counts = np.asarray(counts, dtype=np.int64)
    alloc = np.zeros_like(counts)
    remaining = min(int(budget), int(counts.sum()))
    while remaining > 0:
        active = np.flatnonzero(alloc < counts)
        picks = rng.choice(active, size=remaining)
        drawn = np.bincount(picks, minlength=counts.size)
        take = np.minimum(drawn, counts - alloc)
        alloc += take
        remaining -= int(take.sum())
    return alloc


def stratified_sample(
    df: pl.DataFrame,
    budget: int,
    rng: np.random.Generator,
    max_per_task: int | None = None,
    order: Sequence[str] = ("task_name", "id"),
) -> pl.DataFrame:
    """Sample up to `budget` rows of one submix, stratified by `task_name`, deterministically.

    Rows are ordered by `order` (task first, then a unique key) before drawing, so the same rows and
    seed give the same sample whatever order the source files had.
    """
    if df.height == 0 or budget <= 0:
        return df.head(0)
    if order[0] != "task_name":
        raise ValueError("order must start with task_name")
    df = df.sort(list(order))
    tasks = df.group_by("task_name", maintain_order=True).len()
    counts = tasks["len"].to_numpy().astype(np.int64)
    if max_per_task is not None:
        counts = np.minimum(counts, max_per_task)
    alloc = allocate(counts, budget, rng)
    sizes = tasks["len"].to_numpy().astype(np.int64)
    offsets = np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(sizes)[:-1]])
    chosen = []
    for off, size, k in zip(offsets, sizes, alloc, strict=True):
        if k:
            chosen.append(off + rng.choice(size, size=int(k), replace=False))
    idx = np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)
    return df[idx.astype(np.int64)]
