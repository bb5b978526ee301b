"""Best-fit-decreasing packing as it was written before the compiled plan: the test oracle.

`train.packing.pack_plan` must give the same packs, members in the same order, for the same
lengths (`tests/test_train_data.py`). This is the earlier `pack_lengths`, unchanged.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence


def pack_lengths(lengths: Sequence[int], max_length: int) -> list[list[int]]:
    """Group indices of whole examples into packs of total length <= `max_length` (best-fit decreasing)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    packs: list[list[int]] = []
    # free capacity -> stack of pack indices with that capacity; `caps` holds the non-empty keys sorted.
    by_cap: dict[int, list[int]] = {}
    caps: list[int] = []
    for i in order:
        n = lengths[i]
        if n > max_length:
            raise ValueError(f"example {i} has {n} tokens, more than max_length={max_length}")
        if n == 0:
            continue
        j = bisect.bisect_left(caps, n)
        if j < len(caps):
            cap = caps[j]
            idx = by_cap[cap].pop()
            if not by_cap[cap]:
                del by_cap[cap]
                caps.pop(j)
            packs[idx].append(i)
        else:
            idx = len(packs)
            packs.append([i])
            cap = max_length
        new_cap = cap - n
        if new_cap > 0:
            if new_cap not in by_cap:
                by_cap[new_cap] = []
                bisect.insort(caps, new_cap)
            by_cap[new_cap].append(idx)
    return packs
