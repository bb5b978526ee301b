"""Compiled loop of the packing plan (numba): best fit over examples in placing order."""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True)
def lowest_set(bits: np.ndarray, start: int) -> int:
    """The smallest set bit >= `start` of a bit set held in uint64 words, or -1."""
    w = start >> 6
    if w >= bits.size:
        return -1
    word = bits[w] & ~((np.uint64(1) << np.uint64(start & 63)) - np.uint64(1))
    while True:
        if word != 0:
            low = word & (~word + np.uint64(1))
            b = 0
            while low > np.uint64(1):
                low >>= np.uint64(1)
                b += 1
            return (w << 6) + b
        w += 1
        if w >= bits.size:
            return -1
        word = bits[w]


@nb.njit(cache=True)
def best_fit(order: np.ndarray, lengths: np.ndarray, max_length: int) -> tuple[np.ndarray, int]:
    """Each example's pack (-1: empty) by best fit over `order`. Each free capacity keeps a stack
    of the packs with that room (the last to reach it is used first), a bit set the non-empty ones."""
    n = order.size
    pack_of = np.full(n, -1, np.int64)
    top = np.full(max_length + 1, -1, np.int64)
    below = np.empty(max(n, 1), np.int64)
    bits = np.zeros((max_length >> 6) + 1, np.uint64)
    packs = 0
    for i in order:
        size = lengths[i]
        if size == 0:
            continue
        cap = lowest_set(bits, size)
        if cap >= 0:
            idx = top[cap]
            top[cap] = below[idx]
            if top[cap] == -1:
                bits[cap >> 6] &= ~(np.uint64(1) << np.uint64(cap & 63))
        else:
            idx = packs
            packs += 1
            cap = max_length
        pack_of[i] = idx
        free = cap - size
        if free > 0:
            below[idx] = top[free]
            top[free] = idx
            bits[free >> 6] |= np.uint64(1) << np.uint64(free & 63)
    return pack_of, packs
