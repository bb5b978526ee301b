"""Train's data at scale: the compiled packing plan against the Python one it replaced."""

from __future__ import annotations

import numpy as np
import pytest

from tests.packing_oracle import pack_lengths as oracle
from train.packing import Packs, pack_plan


@pytest.mark.parametrize("seed", range(6))
def test_plan_equals_the_python_best_fit(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(60):
        max_length = int(rng.integers(1, 700))
        n = int(rng.integers(0, 400))
        lengths = rng.integers(0, max_length + 1, n)
        if rng.random() < 0.3:  # many equal lengths: ties between packs of equal room
            lengths = np.minimum(lengths, rng.integers(1, 6))
        assert pack_plan(lengths, max_length).to_lists() == oracle(lengths.tolist(), max_length)


def test_plan_equals_the_python_best_fit_on_a_long_tail() -> None:
    rng = np.random.default_rng(9)
    lengths = np.clip(rng.lognormal(5.5, 0.9, 50_000), 0, 4096).astype(np.int64)
    plan = pack_plan(lengths, 4096)
    assert plan.to_lists() == oracle(lengths.tolist(), 4096)
    sums = np.add.reduceat(lengths[plan.members], plan.offsets[:-1])
    assert sums.max() <= 4096 and plan.members.size == np.count_nonzero(lengths)


def test_plan_refuses_an_example_longer_than_a_pack() -> None:
    with pytest.raises(ValueError, match="example 1 has 9 tokens, more than max_length=8"):
        pack_plan([3, 9, 2], 8)
    assert len(pack_plan([], 8)) == 0 and pack_plan([0, 0], 8).to_lists() == []


def test_single_packs_leave_out_empty_examples() -> None:
    assert Packs.singles(np.array([3, 0, 5])).to_lists() == [[0], [2]]
