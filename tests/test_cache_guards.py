"""The generation cache's guards: one writer at a time, damaged files named and set aside.

Generation runs go to the local OpenAI-compatible server of tests/test_traces_failures.py, which
logs every request, so each test asserts what was paid for (requests per prompt).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from builders.generation import cache as cache_module
from builders.generation.cache import QUARANTINE, CacheDamaged, GenerationCache
from builders.traces.run import run_traces
from core.errors import InputError
from core.folderlock import LOCK_NAME, FolderBusy
from tests.test_traces_common import prompt_table, traces_cfg
from tests.test_traces_failures import FakeTeacher, teacher

ROOT = Path(__file__).resolve().parents[1]

_HOLDER = """
import sys, time
from builders.generation.cache import GenerationCache
GenerationCache(sys.argv[1], lock=True)
print("held", flush=True)
time.sleep(120)
"""


@pytest.fixture
def server() -> Iterator[FakeTeacher]:
    fake = FakeTeacher()
    fake.healthy = True
    yield fake
    fake.close()


def test_a_second_writer_waits_then_names_the_holder(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(root)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(FolderBusy) as err:
            GenerationCache(root, lock=True, wait_s=0.5)
        message = str(err.value)
        assert message.startswith(f"{root}: the generation cache is in use by pid {holder.pid} on ")
        assert (
            socket.gethostname() in message
            and " UTC (python" in message
            and re.search(r"waited [01]s\. Only one run may write it", message)
        )
        GenerationCache(root).keys()  # a reader does not wait
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # the OS releases its lock; the file stays
        holder.wait()
    assert (root / LOCK_NAME).exists()
    with GenerationCache(root, lock=True, wait_s=0) as cache:
        assert cache.locked
        with GenerationCache(root, lock=True, wait_s=0):  # the same process shares its lock
            pass
    assert not cache.locked


def test_a_writer_waits_for_the_first_to_finish(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER.replace("time.sleep(120)", "time.sleep(1.5)"), str(root)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    with GenerationCache(root, lock=True, wait_s=60):
        assert holder.poll() is not None  # it got the lock once the holder was gone
    holder.wait()


def answer(cfg_teacher: dict, prompts: pl.DataFrame, tmp_path: Path, out: str, **kw: object) -> dict:
    cfg = traces_cfg([cfg_teacher], shard_size=100, cache_pack_bytes=1, **kw)  # a run: one pack
    return run_traces(prompts, cfg, 3, tmp_path / out, tmp_path / "cache")


def truncate_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_truncated_pack_is_set_aside_and_only_its_answers_are_asked_again(
    server: FakeTeacher, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    prompts = prompt_table(20)
    first, second = prompts.head(12), prompts
    answer(teacher([server.url]), first, tmp_path, "out1")
    answer(teacher([server.url]), second, tmp_path, "out2")
    packs = GenerationCache(tmp_path / "cache").shards()
    assert len(packs) == 2 and len(server.received) == 20
    held = set(pq.read_table(packs[0])["id"].to_pylist())
    assert held == set(first["id"])

    # A copy of six of its answers in another file (a compaction killed before deleting its parts).
    kept = pl.read_parquet(packs[0]).sort("id").head(6)
    kept.write_parquet(tmp_path / "cache" / f"part-{99:020d}-copy.parquet")
    truncate_half(packs[0])
    with pytest.raises(InputError, match=rf"^{packs[0]}: damaged generation-cache file \("):
        GenerationCache(tmp_path / "cache").keys()  # a reader names it and changes nothing
    assert packs[0].exists()

    server.received.clear()
    caplog.set_level(logging.WARNING)
    stats = answer(teacher([server.url]), second, tmp_path, "out3")
    warned = [r.getMessage() for r in caplog.records if "damaged generation-cache file" in r.getMessage()]
    quarantined = tmp_path / "cache" / QUARANTINE / packs[0].name
    assert warned == [
        f"{packs[0]}: damaged generation-cache file (Parquet magic bytes not found in footer. Either the "
        f"file is corrupted or this is not a parquet file.); moved to {quarantined}: answers that no "
        "other file holds are asked again"
    ]
    assert quarantined.exists() and not packs[0].exists()
    # Paid again: exactly the answers that only the damaged pack held, once each.
    by_id = dict(zip(prompts["id"], prompts["question"], strict=True))
    assert Counter(server.received) == Counter(by_id[i] for i in held - set(kept["id"]))
    assert stats["funnel"]["rows_out"] == 20
    assert set(GenerationCache(tmp_path / "cache").load()["id"]) == set(prompts["id"])


def test_a_pack_damaged_inside_is_found_when_read(server: FakeTeacher, tmp_path: Path) -> None:
    """A file whose footer is whole but whose pages are not: found by the read that fails on it."""
    prompts = prompt_table(12)
    answer(teacher([server.url]), prompts, tmp_path, "out1")
    (pack,) = GenerationCache(tmp_path / "cache").shards()
    meta = pq.read_metadata(pack).row_group(0).column(0)  # the key column's pages
    data = bytearray(pack.read_bytes())
    start = meta.data_page_offset
    data[start + 8 : start + meta.total_compressed_size] = b"\xff" * (meta.total_compressed_size - 8)
    pack.write_bytes(bytes(data))
    server.received.clear()
    stats = answer(teacher([server.url]), prompts, tmp_path, "out2")
    assert (tmp_path / "cache" / QUARANTINE / pack.name).exists()
    assert sorted(server.received) == sorted(prompts["question"])  # no other file held them
    assert stats["funnel"]["rows_out"] == 12


def test_a_damaged_file_with_a_good_copy_in_dvc_stops_the_run(
    server: FakeTeacher, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When DVC's cache holds the file, nothing is asked again: the line says how to put it back."""
    prompts = prompt_table(8)
    answer(teacher([server.url]), prompts, tmp_path, "out1")
    (pack,) = GenerationCache(tmp_path / "cache").shards()
    # What `dvc repro` leaves: the cache folder is an out in dvc.lock, its files in .dvc/cache.
    md5 = __import__("hashlib").md5(pack.read_bytes()).hexdigest()
    objects = tmp_path / ".dvc" / "cache" / "files" / "md5"
    (objects / md5[:2]).mkdir(parents=True)
    (objects / md5[:2] / md5[2:]).write_bytes(pack.read_bytes())
    listing = f'[{{"md5": "{md5}", "relpath": "{pack.name}"}}]'
    (objects / "ab").mkdir()
    (objects / "ab" / "cdef.dir").write_text(listing)
    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  traces:\n    cmd: x\n    outs:\n    - path: cache\n      hash: md5\n"
        "      md5: abcdef.dir\n"
    )
    truncate_half(pack)
    monkeypatch.chdir(tmp_path)
    server.received.clear()
    with pytest.raises(CacheDamaged) as err:
        answer(teacher([server.url]), prompts, tmp_path, "out2")
    assert str(err.value) == (
        f"{pack}: damaged generation-cache file (Parquet magic bytes not found in footer. Either the file "
        f"is corrupted or this is not a parquet file.), moved to {tmp_path / 'cache' / QUARANTINE}; DVC's "
        "cache holds its good copy: run `dvc checkout cache`, then run again (a run without it asks the "
        "teacher again for the answers it held)"
    )
    assert server.received == [] and not (tmp_path / "out2").exists()
    # With another file in the folder that dvc.lock does not list, `dvc checkout` would refuse:
    # the line names the copy to make instead.
    (tmp_path / "cache" / QUARANTINE / pack.name).rename(pack)
    (tmp_path / "cache" / "part-00000000000000000009-new.parquet").write_bytes(b"")
    pl.DataFrame(schema=pl.from_arrow(cache_module.CACHE_SCHEMA.empty_table()).schema).write_parquet(
        tmp_path / "cache" / "part-00000000000000000009-new.parquet"
    )
    with pytest.raises(CacheDamaged, match=rf"run `cp {objects / md5[:2] / md5[2:]} {pack}`, then run again"):
        answer(teacher([server.url]), prompts, tmp_path, "out2")
    assert server.received == []
