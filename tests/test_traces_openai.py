"""The `openai` backend against a real `vllm serve` of the tiny model, retries, and SIGKILL resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import polars as pl
import pytest
import yaml

from builders.generation.cache import GenerationCache
from builders.traces.run import run_traces
from tests.test_traces_common import build_teacher, prompt_table, traces_cfg
from tests.vllmserve import vllm_serve

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`vllm serve` of the tiny teacher on 127.0.0.1; yields (base URL, model folder)."""
    model = build_teacher(tmp_path_factory.mktemp("serve") / "tiny-a")
    with vllm_serve(model, tmp_path_factory.mktemp("log") / "serve.log") as url:
        yield url, model


class Proxy:
    """A local HTTP proxy in front of the server: logs each request's question, can answer 503."""

    def __init__(self, upstream: str | None, delay_s: float = 0.0) -> None:
        self.upstream, self.delay_s = upstream, delay_s
        self.fail_next = 0
        self.log: list[tuple[int, str]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                question = json.loads(body)["messages"][-1]["content"]
                with lock:
                    fail = proxy.upstream is None or proxy.fail_next > 0
                    if proxy.fail_next > 0:
                        proxy.fail_next -= 1
                    proxy.log.append((503 if fail else 200, question))
                if fail:
                    status, data = 503, b'{"error": "busy"}'
                else:
                    time.sleep(proxy.delay_s)
                    r = httpx.post(proxy.upstream + self.path.removeprefix("/v1"), content=body, timeout=60,
                                   headers={"Content-Type": "application/json"})  # fmt: skip
                    status, data = r.status_code, r.content
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def ok_questions(self) -> list[str]:
        return [q for status, q in self.log if status == 200]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def openai_teacher(model: Path, urls: list[str], **kw: object) -> dict[str, object]:
    return {"name": "tiny-a", "backend": "openai", "model": str(model), "base_urls": urls,
            "served_model_name": str(model), "max_model_len": 256, "backoff_s": 0.01, "max_retries": 4,
            "sampling": {"temperature": 1.0, "top_p": 1.0, "max_tokens": 16, "seed": 1}, **kw}  # fmt: skip


def test_openai_backend_spreads_and_retries(server: tuple[str, Path], tmp_path: Path) -> None:
    upstream, model = server
    good, down = Proxy(upstream), Proxy(None)  # `down` answers 503 to everything
    good.fail_next = 1
    try:
        prompts = prompt_table(6, long_question_at=2)
        cfg = traces_cfg([openai_teacher(model, [down.url, good.url], concurrency=2)], remove_truncated=False)
        run_traces(prompts, cfg, 3, tmp_path / "out", tmp_path / "cache")
    finally:
        good.close()
        down.close()
    traces = pl.read_parquet(tmp_path / "out" / "traces.parquet")
    removed = pl.read_parquet(tmp_path / "out" / "removed.parquet")
    assert traces.height == 5 and removed["reason"].to_list() == ["prompt_too_long"]
    assert (traces["prompt_tokens"] > 0).all() and (traces["completion_tokens"] > 0).all()
    assert len(down.log) >= 1 and all(s == 503 for s, _ in down.log)
    assert good.log[0][0] == 503  # the first answer from the good URL was an error, then retried
    assert sorted(good.ok_questions()) == sorted(traces["question"].to_list())
    assert json.loads((tmp_path / "out" / "run.json").read_text())["teachers"]["tiny-a"]["sent"] == 5
    meta = json.loads((tmp_path / "out" / "meta" / "tiny-a.json").read_text())
    assert (
        meta["backend"] == "openai" and meta["completion_tokens_total"] == traces["completion_tokens"].sum()
    )


def test_sigkill_then_resume(server: tuple[str, Path], tmp_path: Path) -> None:
    upstream, model = server
    proxy = Proxy(upstream, delay_s=0.15)
    prompts = prompt_table(40)
    prompts.write_parquet(tmp_path / "prompts.parquet")
    teacher = openai_teacher(model, [proxy.url], concurrency=1)
    traces = {"teachers": [teacher], "shard_size": 3, "min_new_tokens": 4, "remove_truncated": False}
    terms = {"license": "Apache-2.0", "outputs_may_train_models": True, "commercial_use": True, "url": None}
    params = {"base": {"seed": 5}, "license": {"teachers": {"tiny-a": terms}},
              "traces": {**traces, "min_response_chars": 0}}  # fmt: skip
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    cmd = [sys.executable, "-m", "builders.traces", "--params", str(tmp_path / "params.yaml"),
           "--prompts", str(tmp_path / "prompts.parquet"), "--out", str(tmp_path / "out"),
           "--cache", str(tmp_path / "cache")]  # fmt: skip
    cache = GenerationCache(tmp_path / "cache")
    try:
        first = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while len(cache.shards()) < 3 and first.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        assert first.wait() == -signal.SIGKILL
        cached = cache.load()
        assert 0 < cached.height < 40 and cached["key"].n_unique() == cached.height
        assert not (tmp_path / "out" / "traces.parquet").exists()
        id_of = dict(zip(prompts["question"], prompts["id"], strict=True))
        proxy.log.clear()
        second = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert second.returncode == 0, second.stderr[-2000:]
    finally:
        proxy.close()
    resent = {id_of[q] for q in proxy.ok_questions()}
    assert resent.isdisjoint(set(cached["id"]))  # nothing completed before the kill was asked again
    assert len(resent) == 40 - cached.height
    traces = pl.read_parquet(tmp_path / "out" / "traces.parquet")
    removed = pl.read_parquet(tmp_path / "out" / "removed.parquet")
    assert set(removed["reason"]) <= {"empty_response"}  # random weights may emit only special tokens
    # an empty answer is asked again (4 retries, each as empty with its seed); every other prompt once
    times = Counter(id_of[q] for q in proxy.ok_questions())
    assert {i: n for i, n in times.items() if n > 1} == {i: 5 for i in set(removed["id"]) & resent}
    # one row per prompt (kept or removed), none lost, none twice
    assert sorted(traces["id"].to_list() + removed["id"].to_list()) == prompts["id"].to_list()
    assert traces["id"].n_unique() == traces.height
    run = json.loads((tmp_path / "out" / "run.json").read_text())["teachers"]["tiny-a"]
    assert run["sent"] == 40 - cached.height
    assert run["cached_before_run"] == cached.height
