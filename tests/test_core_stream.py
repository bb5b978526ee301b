"""The streaming helpers in core: Parquet written a row group at a time, spills, the process pool."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from core.io import write_parquet, write_parquet_frames
from core.parallel import THREAD_VARS, ProcessPool
from core.schema import PROMPT_SCHEMA
from core.spill import Spill, read_key


def _prompts(n: int) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    return pl.DataFrame(
        {
            "id": [f"{i:024x}" for i in rng.integers(0, 2**62, n)],
            "submix": "cot",
            "task_name": [f"t{i % 97}" for i in range(n)],
            "template_type": "zs_opt",
            "has_options": rng.random(n) < 0.5,
            "system_prompt_id": rng.integers(1, 17, n).astype(np.int32),
            "system_prompt": "Explain.",
            "question": ["q" * int(k) for k in rng.integers(1, 300, n)],
            "reference": "r",
        }
    ).sort("id")


@pytest.mark.parametrize("n", [0, 5, 65_536, 150_001])
def test_frames_written_as_one_table_give_the_same_bytes(tmp_path: Path, n: int) -> None:
    df = _prompts(n)
    write_parquet(df, tmp_path / "whole.parquet", PROMPT_SCHEMA)
    pieces = (df.slice(i, 7_777) for i in range(0, max(n, 1), 7_777))
    assert write_parquet_frames(pieces, tmp_path / "frames.parquet", PROMPT_SCHEMA) == n
    assert (tmp_path / "frames.parquet").read_bytes() == (tmp_path / "whole.parquet").read_bytes()


def test_spill_reads_back_each_key_in_the_order_added(tmp_path: Path) -> None:
    a, b = Spill(tmp_path / "a"), Spill(tmp_path / "b")
    df = pl.DataFrame({"k": ["x", "y", "x", "z"], "v": [1, 2, 3, 4]})
    a.add_by(df, "k")
    a.add(pl.DataFrame({"v": [5]}), "x")
    b.add(pl.DataFrame({"v": [6]}), "x")
    b.close()  # another process's spill: read once its writer is done
    assert a.stored() == ["x", "y", "z"]
    assert a.read("x")["v"].to_list() == [1, 3, 5]
    assert read_key([tmp_path / "a", tmp_path / "b"], "x")["v"].to_pylist() == [1, 3, 5, 6]  # type: ignore[index]
    assert read_key([tmp_path / "b"], "y") is None
    with pytest.raises(ValueError, match="safe file name"):
        a.add(df, "../up")


def _square_pid(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def test_pool_keeps_order_and_runs_in_other_processes() -> None:
    with ProcessPool(2) as pool:
        got = list(pool.imap(_square_pid, range(20), in_flight=3))
        unordered = sorted(r for r, _ in pool.imap(_square_pid, range(20), ordered=False))
    assert [r for r, _ in got] == [x * x for x in range(20)]
    assert unordered == [x * x for x in range(20)]
    assert os.getpid() not in {pid for _, pid in got}
    with ProcessPool(1) as pool:
        assert {pid for _, pid in pool.imap(_square_pid, range(3))} == {os.getpid()}


def _fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("three")
    return x


def test_pool_raises_a_task_error() -> None:
    with ProcessPool(2) as pool, pytest.raises(ValueError, match="three"):
        list(pool.imap(_fail_on_three, range(10)))


def _threads(_: int) -> tuple[str | None, int]:
    import polars

    return os.environ.get("POLARS_MAX_THREADS"), polars.thread_pool_size()


def test_pool_workers_share_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("core.parallel.cores", lambda: 4)
    for var in THREAD_VARS:
        monkeypatch.delenv(var, raising=False)
    with ProcessPool(2) as pool:
        got = set(pool.imap(_threads, range(4)))
    assert got == {("2", 2)}  # each worker's polars pool: its share of the cores
    assert not any(var in os.environ for var in THREAD_VARS)  # this process's environment unchanged
