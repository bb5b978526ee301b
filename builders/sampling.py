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


DRAWS = 4096  # uniforms drawn at a time: a fixed number, so the stream never depends on the budget


def allocate(counts: np.ndarray, budget: int, rng: np.random.Generator) -> np.ndarray:
    """How many queries each task gives when a task is drawn uniformly per query until `budget`.

    Draw j takes the j-th uniform of `rng`'s stream and picks among the tasks not yet run dry at that
    step (Orca's sequential procedure exactly). A larger budget continues the same sequence, so its
    allocation contains every smaller one's: raising a budget adds prompts, it never swaps them.
    Draws are vectorised up to the next task that runs dry.
    """
    counts = np.asarray(counts, dtype=np.int64)
    alloc = np.zeros_like(counts)
    remaining = min(int(budget), int(counts.sum()))
    active = np.flatnonzero(counts > 0)
    uniforms, pos = np.empty(0), 0
    while remaining > 0:
        if pos == uniforms.size:
            uniforms, pos = rng.random(DRAWS), 0
        seg = uniforms[pos:]
        picks = active[np.minimum((seg * active.size).astype(np.int64), active.size - 1)]
        left = counts[picks] - alloc[picks] - _occurrences(picks)  # rows left when the pick is made
        dry = np.flatnonzero(left == 1)
        n = min(remaining, int(dry[0]) + 1 if dry.size else seg.size)
        alloc += np.bincount(picks[:n], minlength=counts.size)
        remaining -= n
        pos += n
        if dry.size and dry[0] < n:
            active = np.flatnonzero(alloc < counts)
    return alloc


def _occurrences(values: np.ndarray) -> np.ndarray:
    """For each element, how many equal elements come before it."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    index = np.arange(values.size)
    starts = np.maximum.accumulate(np.where(np.r_[True, ordered[1:] != ordered[:-1]], index, 0))
    out = np.empty_like(index)
    out[order] = index - starts
    return out


def stratified_sample(
    df: pl.DataFrame,
    budget: int,
    rng: np.random.Generator,
    max_per_task: int | None = None,
    order: Sequence[str] = ("task_name", "id"),
) -> pl.DataFrame:
    """Sample up to `budget` rows of one submix, stratified by `task_name`, deterministically.

    Rows are ordered by `order` (task first, then a unique key) before drawing, so the same rows and
    seed give the same sample whatever order the source files had. Each row gets a random rank in
    its task, drawn before anything that depends on the budget, and a task gives its best-ranked
    rows: a larger budget (or `max_per_task`) keeps every row a smaller one chose.
    """
    if df.height == 0 or budget <= 0:
        return df.head(0)
    if order[0] != "task_name":
        raise ValueError("order must start with task_name")
    rank_rng, task_rng = rng.spawn(2)
    df = df.sort(list(order)).with_columns(pl.Series("_rank", rank_rng.random(df.height)))
    tasks = df.group_by("task_name", maintain_order=True).len()
    counts = tasks["len"].to_numpy().astype(np.int64)
    if max_per_task is not None:
        counts = np.minimum(counts, max_per_task)
    alloc = pl.DataFrame({"task_name": tasks["task_name"], "_take": allocate(counts, budget, task_rng)})
    return (
        df.join(alloc, on="task_name", how="left", maintain_order="left")
        .filter(pl.col("_rank").rank("ordinal").over("task_name") <= pl.col("_take"))
        .drop("_rank", "_take")
    )
