"""`dvc repro` of `traces` against a local OpenAI-compatible server that counts what it is paid for.

- `kill -9` of the `dvc` process alone: its stage stops sending, caches what comes back and exits;
  the next `dvc repro` (started at once) waits for its cache lock; every prompt is answered once.
- a pack truncated to half, DVC holding its good copy: the stage stops with one line saying
  `dvc checkout`, which puts it back; nothing is asked again.
- params.yaml edited while the stage runs: the stage stops with one line, dvc.lock keeps what did
  run, and the rerun records the new params.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import polars as pl
import psutil
import pytest
import yaml

from builders.generation.cache import QUARANTINE
from tests.dvcutil import BIN, dvc_env, dvc_status, keep_stages, make_dvc_repo, run_dvc
from tests.test_traces_common import prompt_table
from tests.test_traces_failures import completion, teacher

pytestmark = pytest.mark.slow

N = 40


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.server.teacher.answer(self)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    teacher: CountingTeacher


class CountingTeacher:
    """Answers every chat request after `delay_s`; while `hold` is set, answers nothing yet.
    Records (question, seed) of every request it receives."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.received: list[tuple[str, int]] = []
        self.hold = threading.Event()
        self.released = threading.Event()
        self._lock = threading.Lock()
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.teacher = self
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True).start()

    def answer(self, request: BaseHTTPRequestHandler) -> None:
        body = json.loads(request.rfile.read(int(request.headers["Content-Length"])))
        question = body["messages"][-1]["content"]
        with self._lock:
            self.received.append((question, body["seed"]))
        time.sleep(self.delay_s)
        if self.hold.is_set():
            self.released.wait(60)
        data = completion(question)
        request.send_response(200)
        for name, value in (("Content-Type", "application/json"), ("Content-Length", str(len(data)))):
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(data)

    def close(self) -> None:
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[CountingTeacher]:
    fake = CountingTeacher(delay_s=0.2)
    yield fake
    fake.close()


def traces_repo(dest: Path, url: str) -> Path:
    """The project with only the `traces` stage, its teacher the local server, prompts in place."""

    def prepare(repo: Path) -> None:
        keep_stages(repo, "traces")
        doc = yaml.safe_load((repo / "dvc.yaml").read_text())
        deps = doc["stages"]["traces"]["deps"]
        doc["stages"]["traces"]["deps"] = [d for d in deps if "dirs.models" not in d]
        (repo / "dvc.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        params = yaml.safe_load((repo / "params.yaml").read_text())
        params["traces"].update(
            teachers=[teacher([url], concurrency=4, timeout_s=30.0)], shard_size=2, flush_s=0.2
        )
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        (repo / "data" / "dedup").mkdir(parents=True)
        prompt_table(N).write_parquet(repo / "data" / "dedup" / "prompts.parquet")

    return make_dvc_repo(dest, prepare)


def start_repro(repo: Path, log: Path) -> subprocess.Popen:
    with log.open("w") as fh:
        return subprocess.Popen(
            [str(BIN / "dvc"), "repro"], cwd=repo, env=dvc_env(repo), stdout=fh, stderr=subprocess.STDOUT
        )


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def stage_process(dvc: subprocess.Popen) -> psutil.Process:
    procs = [p for p in psutil.Process(dvc.pid).children(recursive=True) if "builders.traces" in p.cmdline()]
    assert len(procs) == 1, procs
    return procs[0]


def stage_lines(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if line.startswith("traces: ")]


def cache_out(repo: Path) -> dict[str, Any]:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return next(o for o in lock["stages"]["traces"]["outs"] if o["path"] == "data/traces_cache")


def test_kill_dvc_alone_then_repro_answers_every_prompt_once(server: CountingTeacher, tmp_path: Path) -> None:
    repo = traces_repo(tmp_path / "repo", server.url)
    questions = prompt_table(N)["question"].to_list()

    first = start_repro(repo, tmp_path / "first.log")
    wait_for(lambda: len(server.received) >= 10, "ten requests")
    stage = stage_process(first)
    server.hold.set()  # what is on the wire now stays there until the second run waits for the cache
    os.kill(first.pid, signal.SIGKILL)  # dvc alone: its stage is orphaned, not killed
    first.wait()
    assert stage.is_running()

    second = start_repro(repo, tmp_path / "second.log")
    wait_for(lambda: "is in use by pid" in (tmp_path / "second.log").read_text(), "the second run to wait")
    waiting = (tmp_path / "second.log").read_text()
    assert f"data/traces_cache: the generation cache is in use by pid {stage.pid} on " in waiting
    sent_by_orphan = len(server.received)
    assert sent_by_orphan < N  # it stopped sending once dvc was gone
    server.hold.clear()
    server.released.set()
    gone, _ = psutil.wait_procs([stage], timeout=60)
    assert gone  # (not our child: its exit code is not ours to read; its one line is below)
    assert stage_lines(tmp_path / "first.log") == [
        f"traces: the dvc process (pid {first.pid}) that ran this stage is gone; teacher tiny-a stopped "
        "sending; the answers that came are cached: run `dvc repro` again"
    ]
    assert second.wait(timeout=300) == 0, (tmp_path / "second.log").read_text()

    # Paid once: every prompt reached the server exactly once over both runs.
    assert Counter(q for q, _ in server.received) == Counter(questions)
    traces = pl.read_parquet(repo / "data" / "traces" / "traces.parquet")
    assert traces.height == N and set(traces["question"]) == set(questions)
    run = json.loads((repo / "data" / "traces" / "run.json").read_text())["teachers"]["tiny-a"]
    assert run["cached_before_run"] == sent_by_orphan and run["sent"] == N - sent_by_orphan
    assert dvc_status(repo) == {}
    listing = next((repo / ".dvc" / "cache" / "files" / "md5").rglob(cache_out(repo)["md5"][2:]))
    assert all(not e["relpath"].startswith(".") for e in json.loads(listing.read_text()))  # no .writer.lock

    # A pack truncated to half (a full disk, a bad copy): DVC's cache has its good copy.
    packs = sorted((repo / "data" / "traces_cache").glob("pack-*.parquet"))
    assert packs
    data = packs[0].read_bytes()
    packs[0].write_bytes(data[: len(data) // 2])
    received = len(server.received)
    r = run_dvc(repo, "repro", check=False)
    assert r.returncode != 0
    rel = f"data/traces_cache/{packs[0].name}"
    assert [
        line for line in r.stderr.splitlines() + r.stdout.splitlines() if line.startswith("traces: ")
    ] == [
        f"traces: {rel}: damaged generation-cache file (Parquet magic bytes not found in footer. Either the "
        "file is corrupted or this is not a parquet file.), moved to data/traces_cache/.quarantine; DVC's "
        "cache holds its good copy: run `dvc checkout data/traces_cache`, then run again (a run without it "
        "asks the teacher again for the answers it held)"
    ]
    assert (repo / "data" / "traces_cache" / QUARANTINE / packs[0].name).exists()
    run_dvc(repo, "checkout", "data/traces_cache")
    assert packs[0].read_bytes() == data
    run_dvc(repo, "repro")
    assert len(server.received) == received  # nothing paid again
    assert dvc_status(repo) == {}


def test_params_edited_mid_run_are_refused_and_never_recorded(
    server: CountingTeacher, tmp_path: Path
) -> None:
    repo = traces_repo(tmp_path / "repo", server.url)
    params_path = repo / "params.yaml"
    log = tmp_path / "run.log"
    lock_before = (repo / "dvc.lock").read_text()  # the project's committed lock
    dvc = start_repro(repo, log)
    wait_for(lambda: len(server.received) >= 6, "six requests")
    params = yaml.safe_load(params_path.read_text())
    params["traces"]["min_response_chars"] = 5  # edited while the stage runs
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    assert dvc.wait(timeout=300) != 0
    assert stage_lines(log) == [
        "traces: params.yaml changed while the stage ran; it keeps what it read at its start, so nothing "
        "more is written and DVC records nothing: run it again"
    ]
    assert (repo / "dvc.lock").read_text() == lock_before
    assert not (repo / "data" / "traces" / "traces.parquet").exists()
    received = len(server.received)
    assert received == N  # the answers themselves did not depend on the edit: all of them are cached

    run_dvc(repo, "repro")
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert lock["stages"]["traces"]["params"]["params.yaml"]["traces"]["min_response_chars"] == 5
    assert len(server.received) == received  # the rerun paid nothing: every answer was cached
    assert dvc_status(repo) == {}
