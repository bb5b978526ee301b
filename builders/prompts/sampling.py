"""Orca's stratified sampling: pick a task uniformly, then a query from it without replacement.

Each pool of a submix (its training tasks, its held-out tasks) has two seeded streams. The rank
stream gives the row at position p of the pool (rows sorted by task, template type, question) the
p-th uniform as its rank in its task; the task stream draws tasks until the budget is met
(`allocate`). A task gives its best-ranked rows. Ranks never depend on the budget, so a larger
budget keeps every row a smaller one chose.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import polars as pl

from core.schema import SUBMIXES


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


def pool_rngs(seed: int, submix: str, purpose: int) -> tuple[np.random.Generator, np.random.Generator]:
    """(rank stream, task-draw stream) of one pool of a submix: purpose 1 held-out, 2 training."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, SUBMIXES.index(submix), purpose]))
    rank_rng, task_rng = rng.spawn(2)
    return rank_rng, task_rng


def uniforms_at(rng: np.random.Generator, spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """The uniforms at positions `[start, start + n)` of `rng`'s stream, span after span.

    Spans must not overlap and come in increasing order. `rng` itself is not consumed: a copy of
    its bit generator skips ahead (`advance`) over the positions between spans, so a task's ranks
    are those `rng.random(total)` would give it without drawing the rest of the stream.
    """
    bits = type(rng.bit_generator)()
    bits.state = rng.bit_generator.state
    gen = np.random.Generator(bits)
    out, cursor = [], 0
    for start, n in spans:
        if start < cursor:
            raise ValueError("spans must come in increasing order without overlap")
        bits.advance(start - cursor)
        out.append(gen.random(n))
        cursor = start + n
    return np.concatenate(out) if out else np.empty(0)


def take_best(df: pl.DataFrame) -> pl.DataFrame:
    """The rows of each task whose `_rank` is among its `_take` smallest (ties: the earlier row)."""
    return df.filter(pl.col("_rank").rank("ordinal").over("task_name") <= pl.col("_take"))
