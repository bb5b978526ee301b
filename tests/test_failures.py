"""What a careful user breaks: damaged inputs, missing folders, kills, an emptied dvc.lock, a
teacher without terms. Each gives one clear line (or is cleaned up by the next run)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from builders.generation.cache import GenerationCache
from builders.license.__main__ import main as license_main
from builders.prompts.flan_source import SourceError, resolve_source
from builders.prompts.recipe import build_prompts
from builders.traces.__main__ import main as traces_main
from core.errors import InputError
from core.io import atomic_path, write_text
from core.lockfile import guard, lock_problem
from core.lockfile import main as lockfile_main
from dedup.dedup import main as dedup_main
from tests.test_prompts import make_cfg, source  # noqa: F401  (the `source` fixture)

ROOT = Path(__file__).resolve().parents[1]


def corrupt_parquet(path: Path) -> Path:
    """A prompt table whose footer is valid and whose `question` pages are garbage."""
    n = 3000
    table = pa.table(
        {
            "id": [f"id{i:05d}" for i in range(n)],
            "submix": ["cot"] * n,
            "task_name": ["t"] * n,
            "question": [f"question {i} " * 8 for i in range(n)],
        }
    )
    pq.write_table(table, path, compression="snappy", use_dictionary=False)
    meta = pq.ParquetFile(path).metadata.row_group(0).column(3)
    start = meta.data_page_offset
    data = bytearray(path.read_bytes())
    for i in range(start + 64, start + 4000):
        data[i] = (data[i] * 7 + 13) % 256
    path.write_bytes(bytes(data))
    return path


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    return lines[0]


@pytest.mark.parametrize("stage", ["license", "dedup"])
def test_a_corrupt_page_is_one_line_naming_file_and_column(
    stage: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = corrupt_parquet(tmp_path / "prompts.parquet")
    main = {"license": license_main, "dedup": dedup_main}[stage]
    out = tmp_path / "out"
    rc = main(["--params", str(ROOT / "params.yaml"), "--prompts", str(bad), "--out", str(out)])
    assert rc == 2
    line = one_error_line(capsys)
    assert line.startswith(f"{stage}: {bad}: unreadable Parquet file")
    if stage == "license":  # its second pass reads every column of a row group at once
        assert "row group 0, column 'question'" in line
    assert not out.exists() or not any(out.iterdir())


def test_a_missing_local_folder_is_not_taken_for_a_hub_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    with pytest.raises(SourceError, match=r"^data/nothing_here: FLAN source folder not found$"):
        resolve_source("data/nothing_here", ["cot"], ["zs_opt"])
    # a name that could only be a Hub id, offline: the message says both readings
    with pytest.raises(SourceError, match="no such local folder, and fetching it as a Hub dataset failed"):
        resolve_source("nobody/nothing_here", ["cot"], ["zs_opt"])


def test_a_budgeted_submix_without_data_is_warned_and_named(
    source: Path,  # noqa: F811
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = make_cfg(source, tmp_path, recipe_budgets={"cot": 10, "flan2021": 10, "dialog": 5})
    with caplog.at_level(logging.WARNING):
        _, _, _, stats = build_prompts(cfg, seed=0)
    assert stats["submixes_without_data"] == ["flan2021", "dialog"]
    assert any("['flan2021', 'dialog'] have a budget but no data" in r.getMessage() for r in caplog.records)


# --- kill debris ----------------------------------------------------------------------------------

_WRITER = """
import sys, time
from core.io import atomic_path
with atomic_path(sys.argv[1], is_dir=True) as tmp:
    (tmp / "half.txt").write_text("half")
    print("inside", flush=True)
    time.sleep(60)
"""


def test_a_killed_writer_leaves_debris_the_next_run_removes(tmp_path: Path) -> None:
    target = tmp_path / "release"
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(target)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "inside"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    debris = sorted(p.name for p in tmp_path.glob(".release.*.tmp"))
    assert len(debris) == 1 and not target.exists()
    live = tmp_path / f".release.{os.getppid()}.other.tmp"  # a live process's temp stays
    live.mkdir()
    with atomic_path(target, is_dir=True) as tmp:
        (tmp / "README.md").write_text("done")
    assert sorted(p.name for p in tmp_path.glob(".*.tmp")) == [live.name]
    assert (target / "README.md").read_text() == "done"


def test_the_generation_cache_removes_stale_temp_files(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    root.mkdir()
    stale_file = root / ".part.999999999.part-1.parquet.tmp"
    stale_file.write_bytes(b"half a shard")
    stale_dir = root / ".part.999999999.x.tmp"
    stale_dir.mkdir()
    GenerationCache(root)
    assert not stale_file.exists() and not stale_dir.exists()


# --- dvc.lock emptied by a kill -------------------------------------------------------------------


def test_an_emptied_lock_is_named_and_restored(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lock, good = tmp_path / "dvc.lock", tmp_path / ".dvc" / "tmp" / "dvc.lock.good"
    sound = "schema: '2.0'\nstages:\n  prompts:\n    cmd: python -m builders.prompts\n"
    lock.write_text(sound)
    assert lockfile_main(["--lock", str(lock), "--good", str(good)]) == 0
    assert good.read_text() == sound

    lock.write_text("")  # what a kill during DVC's rewrite leaves
    assert lock_problem(lock) == "is empty"
    assert lockfile_main(["--lock", str(lock), "--good", str(good)]) == 2
    line = one_error_line(capsys)
    assert f"{lock} is empty" in line and "--restore" in line
    assert lockfile_main(["--lock", str(lock), "--good", str(good), "--restore"]) == 0
    assert lock.read_text() == sound

    good.unlink()
    lock.write_text("stages: [unclosed")
    with pytest.raises(InputError, match=r"is not valid YAML .*delete .*dvc.lock and run `dvc repro`"):
        guard(lock, good, restore=True)


# --- a teacher without terms ----------------------------------------------------------------------


@pytest.fixture
def counting_server() -> Iterator[tuple[str, list[str]]]:
    """An OpenAI-compatible endpoint on 127.0.0.1 that records every request path."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.path)
            self.send_response(500)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    finally:
        server.shutdown()
        server.server_close()


def test_a_teacher_without_terms_stops_traces_before_any_request(
    tmp_path: Path, counting_server: tuple[str, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, seen = counting_server
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["traces"]["teachers"] = [
        {"name": "paid", "backend": "openai", "model": "some/model", "base_urls": [url], "max_retries": 0}
    ]
    params["license"]["teachers"] = {"tiny-a": params["license"]["teachers"]["tiny-a"]}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    prompts = tmp_path / "prompts.parquet"
    pq.write_table(pa.table({"id": ["a"], "system_prompt": [""], "question": ["q?"]}), prompts)
    out, cache = tmp_path / "traces", tmp_path / "cache"
    argv = ["--params", str(tmp_path / "params.yaml"), "--prompts", str(prompts), "--out", str(out)]
    assert traces_main([*argv, "--cache", str(cache)]) == 2
    line = one_error_line(capsys)
    assert "'paid' has no terms of use; add license.teachers.paid" in line
    assert seen == [] and not out.exists() and not cache.exists()


def test_write_text_leaves_no_temp(tmp_path: Path) -> None:
    write_text("x", tmp_path / "a.txt")
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_the_command_line_names_the_stage(tmp_path: Path) -> None:
    bad = corrupt_parquet(tmp_path / "prompts.parquet")
    cmd = [sys.executable, "-m", "builders.license", "--prompts", str(bad), "--out", str(tmp_path / "o")]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(f"license: {bad}: unreadable Parquet file")
