"""The generation cache at scale: compaction (also under kill -9), id-range lookups, and the traces
stage reading prompts and writing traces a batch at a time."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from builders.generation.base import GenResult
from builders.generation.cache import GenerationCache
from builders.traces import tables
from builders.traces.run import run_traces
from core.errors import InputError
from tests.test_traces_common import prompt_table, traces_cfg
from tests.test_traces_failures import FakeTeacher, teacher

REPO = Path(__file__).resolve().parents[1]


def results(start: int, n: int, tag: str = "") -> list[GenResult]:
    """Generations with answers that do not compress away (so file sizes mean something)."""
    rng = random.Random(start)
    return [
        GenResult(f"k{i:06d}", f"p{i:06d}", f"{rng.getrandbits(2048):x}{tag}", "stop", 3, 5)
        for i in range(start, start + n)
    ]


def fill(root: Path, parts: int, rows: int) -> GenerationCache:
    """`parts` shards of `rows` generations, in a shuffled order of ids."""
    cache = GenerationCache(root)
    starts = list(range(0, parts * rows, rows))
    random.Random(0).shuffle(starts)
    for s in starts:
        cache.write_shard(results(s, rows), "m", "r")
    return cache


def test_compaction_merges_small_files_and_keeps_each_generation_once(tmp_path: Path) -> None:
    cache = fill(tmp_path / "c", 40, 25)
    cache.write_shard(results(10, 3, tag=" later"), "m", "r")  # the same keys again, in a later part
    before = cache.load()
    assert len(cache.shards()) == 41 and before.height == 1000
    total = sum(p.stat().st_size for p in cache.shards())
    assert cache.compact(pack_bytes=total // 3) == 41
    packs = cache.shards()
    assert 2 <= len(packs) <= 5 and all(p.name.startswith("pack-") for p in packs)
    after = cache.load()
    assert after.sort("key").equals(before.sort("key"))  # the first-written row of a key wins
    for p in packs:  # each pack sorted by id, so an id range reads few row groups
        ids = pl.read_parquet(p, columns=["id"])["id"]
        assert ids.is_sorted()
    keys = pl.Series(["k000100", "k000101", "k000900"])
    got = cache.lookup(keys, "p000100", "p000101")
    assert sorted(got["key"]) == ["k000100", "k000101"]
    assert cache.compact(pack_bytes=total // 3) == 0  # nothing small left to merge


COMPACT = (
    "import sys; from builders.generation.cache import GenerationCache; c = GenerationCache(sys.argv[1]); "
    "print('start', flush=True); c.compact(int(sys.argv[2]))"
)


def compact_in_child(root: Path, pack_bytes: int, kill_after: float | None) -> tuple[int, float]:
    """Compact `root` in a child process, killed with SIGKILL `kill_after` s after it starts."""
    proc = subprocess.Popen(
        [sys.executable, "-c", COMPACT, str(root), str(pack_bytes)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "start"
    t0 = time.perf_counter()
    if kill_after is not None:
        time.sleep(kill_after)
        proc.send_signal(signal.SIGKILL)
    return proc.wait(), time.perf_counter() - t0


@pytest.mark.slow
def test_compaction_killed_at_any_moment_loses_nothing(tmp_path: Path) -> None:
    source = tmp_path / "source"
    cache = fill(source, 300, 40)
    want = cache.load().sort("key")
    pack_bytes = sum(p.stat().st_size for p in cache.shards()) // 6
    calibrate = tmp_path / "calibrate"
    shutil.copytree(source, calibrate)
    rc, full = compact_in_child(calibrate, pack_bytes, None)
    assert rc == 0
    mid_way = 0
    for trial in range(12):
        root = tmp_path / f"trial{trial}"
        shutil.copytree(source, root)
        rc, _ = compact_in_child(root, pack_bytes, full * (trial + 0.5) / 10)
        names = [p.name for p in root.iterdir()]
        parts, packs = sum(n.startswith("part-") for n in names), sum(n.startswith("pack-") for n in names)
        mid_way += rc == -signal.SIGKILL and parts > 0 and packs > 0
        after = GenerationCache(root)  # a new run: temps of the killed writer are removed
        assert not [n for n in (p.name for p in root.iterdir()) if n.endswith(".tmp")]
        assert after.load().sort("key").equals(want), f"trial {trial}: generations lost or changed"
        after.compact(pack_bytes)  # and the next compaction finishes the job
        assert after.load().sort("key").equals(want) and all(
            p.name.startswith("pack-") for p in after.shards()
        )
    assert mid_way >= 1  # at least one kill landed between a pack's rename and its inputs' deletion


def test_traces_in_batches_equal_traces_in_one_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prompts = prompt_table(45)
    prompts.write_parquet(tmp_path / "prompts.parquet", row_group_size=10)
    two = [teacher([], name="a"), teacher([], name="b", fraction=0.5)]
    fake = FakeTeacher()
    try:
        for t in two:
            t["base_urls"] = [fake.url]
        cfg = traces_cfg(two, shard_size=4)
        monkeypatch.setattr(tables, "BATCH_ROWS", 7)
        run_traces(tmp_path / "prompts.parquet", cfg, 3, tmp_path / "small", tmp_path / "cache")
        sent = len(fake.received)
        monkeypatch.setattr(tables, "BATCH_ROWS", 100_000)
        run_traces(tmp_path / "prompts.parquet", cfg, 3, tmp_path / "one", tmp_path / "cache")
    finally:
        fake.close()
    assert len(fake.received) == sent  # the second run found every answer in the cache
    small = pl.read_parquet(tmp_path / "small" / "traces.parquet")
    assert small.equals(pl.read_parquet(tmp_path / "one" / "traces.parquet"))
    assert small.select("id", "teacher").equals(small.select("id", "teacher").sort("id", "teacher"))
    assert small.height == sent and 45 < small.height < 90
    assert (
        pq.ParquetFile(tmp_path / "small" / "traces.parquet").metadata.num_row_groups == 9
    )  # a batch each: 7 + 3 rows of each 10-row group, then 5
    assert len(GenerationCache(tmp_path / "cache").shards()) == 1  # the run's shards, compacted at its end


def test_prompts_not_sorted_by_id_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "prompts.parquet"
    prompt_table(5).sort("id", descending=True).write_parquet(path)
    cfg = traces_cfg([teacher(["http://127.0.0.1:9/v1"])])
    with pytest.raises(InputError, match=r"prompts\.parquet: rows are not sorted by id"):
        run_traces(path, cfg, 3, tmp_path / "out", tmp_path / "cache", source=str(path))
    assert not (tmp_path / "out").exists()


def test_one_run_leaves_the_same_files_however_its_answers_were_flushed(tmp_path: Path) -> None:
    """Two machines flush the same answers at different moments (flush_s is a time): after the end
    of run compaction both hold the same files, names and bytes, so DVC records the same cache."""
    rows = results(0, 60)
    one, many = GenerationCache(tmp_path / "one"), GenerationCache(tmp_path / "many")
    one.write_shard(rows, "m", "r")
    assert one.compact() == 1  # a lone part is packed too
    for start in (45, 0, 30, 15):
        many.write_shard(rows[start : start + 15], "m", "r")
    assert many.compact() == 4
    files = {p.name: p.read_bytes() for p in one.shards()}
    assert [n.split("-")[:2] for n in files] == [["pack", f"{1:020d}"]]
    assert files == {p.name: p.read_bytes() for p in many.shards()}
    assert one.compact() == 0


def test_later_parts_follow_the_packs_and_the_first_written_row_wins(tmp_path: Path) -> None:
    cache = fill(tmp_path / "c", 3, 10)
    cache.compact()
    cache.write_shard(results(5, 2, tag=" again"), "m", "r")  # same keys, answered again later
    reopened = GenerationCache(tmp_path / "c")
    reopened.write_shard(results(100, 2), "m", "r")
    assert [p.name.split("-")[0] for p in reopened.shards()] == ["pack", "part", "part"]
    assert [int(p.name.split("-")[1]) for p in reopened.shards()] == [1, 4, 5]
    got = reopened.load(["k000005"])["response"].item()
    assert not got.endswith(" again")
    reopened.compact()
    assert reopened.load(["k000005"])["response"].item() == got
