"""The `openai` backend against a misbehaving local server: failures are removals, never lost work.

A stdlib OpenAI-compatible server on 127.0.0.1 answers a good chat completion unless the question
carries a marker (malformed JSON, no choices, permanent 500, permanent timeout, ...). Per-request
failures become `request_error` rows and are re-sent on the next run; whole-run failures (credentials
refused, no server reachable, too many failures) stop with a `PipelineError` after caching every
finished answer.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from builders.generation.base import GenError, GenRequest, GenResult
from builders.generation.cache import GenerationCache
from builders.generation.registry import TeacherConfig
from builders.traces.config import TracesConfig
from builders.traces.run import run_traces
from core.errors import PipelineError
from tests.test_traces_common import prompt_table, traces_cfg

KEY = "sk-test-DO-NOT-PRINT-0123456789"
HANG_S = 5.0  # a TIMEOUT question is answered after this long (or when the server closes)
TRICKLE_S = 2.0  # a TRICKLE answer sends one byte of its body this often
FAILURES = {  # marker in the question -> (status, body); None: no answer in time
    "BADJSON": (200, b'{"id": "x", "choices": [{"message": {"content": "tru'),
    "NOCHOICES": (200, json.dumps({"id": "x", "usage": {"prompt_tokens": 3}}).encode()),
    "EMPTYCHOICES": (200, json.dumps({"id": "x", "choices": []}).encode()),
    "NOMESSAGE": (200, json.dumps({"choices": [{"index": 0, "finish_reason": "stop"}]}).encode()),
    "ERROR500": (500, b'{"error": "internal"}'),
    "TIMEOUT": None,
}
HANG, TRICKLE = "HANG", "TRICKLE"  # never answers (until the server closes); a body a byte at a time
EMPTY = {  # marker -> (content, finish_reason) of a 200 whose answer is empty
    "EMPTYONCE": ("", "stop"),  # the first time only, then a good answer
    "BLANKONCE": ("  \n", "stop"),  # the same, blank
    "NULLONCE": (None, "stop"),  # the same, content null
    "EMPTYALWAYS": ("", "stop"),
    "EMPTYLENGTH": ("", "length"),  # the token limit cut it: the model's own answer
}


def completion(question: str, model: str | None = None) -> bytes:
    """A chat completion answering `question`, naming `model` (no model name when None)."""
    return chat_completion(f"answer: {question}", "stop", model)


def chat_completion(content: str | None, finish: str, model: str | None) -> bytes:
    named = {"model": model} if model is not None else {}
    return json.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            **named,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}
            ],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7},
        }
    ).encode()


class FakeTeacher:
    """A local OpenAI-compatible server that misbehaves on marked questions and logs every request.
    Its answers name the model the request asked for (none when `named` is False), or `served`."""

    def __init__(self, key: str | None = None) -> None:
        self.key = key
        self.healthy = False  # True: answer every question well
        self.refuse_after: int | None = None  # answer 401 once this many questions were answered
        self.die_after: int | None = None  # stop listening once this many questions were answered
        self.served: str | None = None  # the model name every answer gives (None: the one asked for)
        self.named = True  # whether answers carry a model name (as real servers do)
        self.asked_model = ""  # the model the request being answered asked for
        self.received: list[str] = []  # every request's question (retries included)
        self.answered: list[str] = []  # questions answered with a good completion
        self.trickled = 0  # bytes of TRICKLE bodies sent
        self.closing = threading.Event()
        lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                question = body["messages"][-1]["content"]
                with lock:
                    fake.asked_model = body["model"]
                    answer, die = fake.answer(question, self.headers.get("Authorization"))
                if answer is None:
                    fake.closing.wait(HANG_S)
                    return
                if answer == HANG:
                    fake.closing.wait()
                    return
                if die:
                    fake.httpd.shutdown()
                    fake.httpd.server_close()
                status, data = (200, completion(question)) if answer == TRICKLE else answer
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if answer != TRICKLE:
                        self.wfile.write(data)
                        return
                    for k in range(len(data)):
                        self.wfile.write(data[k : k + 1])
                        self.wfile.flush()
                        fake.trickled += 1
                        if fake.closing.wait(TRICKLE_S):
                            return
                except OSError:
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True).start()

    def answer(self, question: str, auth: str | None) -> tuple[tuple[int, bytes] | str | None, bool]:
        """(status, body), None for no answer in time, HANG or TRICKLE; and whether to stop
        listening afterwards."""
        seen = self.received.count(question)
        self.received.append(question)
        refused = self.refuse_after is not None and len(self.answered) >= self.refuse_after
        if (self.key and auth != f"Bearer {self.key}") or refused:
            return (401, b'{"error": {"message": "invalid api key"}}'), False
        served = self.served or (self.asked_model if self.named else None)
        marker = None
        if not self.healthy:
            markers = [*FAILURES, HANG, TRICKLE, *EMPTY]
            marker = next((m for m in markers if m in question), None)
        if marker in FAILURES:
            return FAILURES[marker], False
        if marker in (HANG, TRICKLE):
            return marker, False
        if marker in EMPTY and (seen == 0 or not marker.endswith("ONCE")):
            return (200, chat_completion(*EMPTY[marker], served)), False
        self.answered.append(question)
        return (200, completion(question, served)), len(self.answered) == self.die_after

    def close(self) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[FakeTeacher]:
    fake = FakeTeacher()
    yield fake
    fake.close()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


def teacher(urls: list[str], **kw: Any) -> dict[str, Any]:
    """An openai teacher with short timeouts; a Hub-like model name pinned to a commit (no tokenizer)."""
    return {"name": "tiny-a", "backend": "openai", "model": "fake-org/teacher", "revision": "0" * 40,
            "base_urls": urls, "max_model_len": 256, "timeout_s": 0.5, "backoff_s": 0.0, "max_retries": 1,
            "concurrency": 4, "sampling": {"temperature": 1.0, "top_p": 1.0, "max_tokens": 16, "seed": 1},
            **kw}  # fmt: skip


def marked_prompts(n: int, marks: dict[int, str]) -> pl.DataFrame:
    """`n` prompts; the question of row k starts with `marks[k]` when present."""
    table = prompt_table(n)
    questions = [f"{marks[k]} {q}" if k in marks else q for k, q in enumerate(table["question"])]
    return table.with_columns(pl.Series("question", questions))


def ids_of(prompts: pl.DataFrame, questions: Iterable[str]) -> set[str]:
    by_question = dict(zip(prompts["question"], prompts["id"], strict=True))
    return {by_question[q] for q in questions}


def test_request_failures_are_removals_and_rerun_sends_only_them(server: FakeTeacher, tmp_path: Path) -> None:
    marks = {1: "BADJSON", 3: "NOCHOICES", 4: "EMPTYCHOICES", 6: "NOMESSAGE", 8: "ERROR500", 11: "TIMEOUT"}
    prompts = marked_prompts(16, marks)
    failed = {prompts["id"][k]: m for k, m in marks.items()}
    good = set(prompts["id"]) - set(failed)
    cfg = traces_cfg([teacher([server.url])], shard_size=3, max_failure_rate=1.0)
    stats = run_traces(prompts, cfg, 3, tmp_path / "out", tmp_path / "cache")

    traces = pl.read_parquet(tmp_path / "out" / "traces.parquet")
    removed = pl.read_parquet(tmp_path / "out" / "removed.parquet")
    assert set(traces["id"]) == good and traces.height == len(good)
    assert (traces["response"] == "answer: " + traces["question"]).all()
    assert set(GenerationCache(tmp_path / "cache").load()["id"]) == good  # errors are never cached
    assert set(removed["reason"]) == {"request_error"} and set(removed["teacher"]) == {"tiny-a"}
    detail = {failed[i]: d for i, d in zip(removed["id"], removed["detail"], strict=True)}
    assert detail.keys() == set(marks.values())
    assert detail["BADJSON"].startswith("malformed JSON body")
    assert detail["NOCHOICES"] == detail["EMPTYCHOICES"] == "response has no choices"
    assert detail["NOMESSAGE"] == "response choice has no message"
    assert detail["ERROR500"] == "HTTP 500 after 1 retry"
    assert detail["TIMEOUT"] == "ReadTimeout after 1 retry"
    assert server.received.count(prompts["question"][8]) == 2  # 500 and timeout: retried once
    assert server.received.count(prompts["question"][11]) == 2
    assert server.received.count(prompts["question"][1]) == 1  # a malformed 200 is not re-sent
    assert stats["teachers"]["tiny-a"]["removed"] == {"request_error": len(marks)}
    assert stats["funnel"]["rows_in"] == 16 and stats["funnel"]["rows_out"] == len(good)

    # The server is fixed: the rerun sends exactly the failed prompts, once each.
    server.healthy = True
    server.received.clear()
    run_traces(prompts, cfg, 3, tmp_path / "out2", tmp_path / "cache")
    assert sorted(server.received) == sorted(prompts["question"][k] for k in marks)
    run2 = json.loads((tmp_path / "out2" / "run.json").read_text())["teachers"]["tiny-a"]
    assert run2["sent"] == len(marks)
    traces2 = pl.read_parquet(tmp_path / "out2" / "traces.parquet")
    assert traces2.height == 16 and pl.read_parquet(tmp_path / "out2" / "removed.parquet").height == 0


def stopped_run(fake: FakeTeacher, prompts: pl.DataFrame, cfg: TracesConfig, tmp_path: Path) -> str:
    """The message of the `PipelineError` that stops a run against `fake` (closed afterwards)."""
    try:
        with pytest.raises(PipelineError) as err:
            run_traces(prompts, cfg, 3, tmp_path / "out", tmp_path / "cache")
    finally:
        fake.close()
    return str(err.value)


def test_refused_credentials_stop_the_run_and_keep_finished_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeTeacher(key=KEY)
    fake.refuse_after = 5  # the key is revoked mid-run
    monkeypatch.setenv("TEST_TEACHER_KEY", KEY)
    prompts = prompt_table(12)
    cfg = traces_cfg([teacher([fake.url], api_key_env="TEST_TEACHER_KEY", concurrency=1)], shard_size=100)
    caplog.set_level(logging.DEBUG)
    message = stopped_run(fake, prompts, cfg, tmp_path)
    assert "teacher tiny-a" in message and fake.url in message and "HTTP 401" in message
    assert "TEST_TEACHER_KEY" in message and KEY not in message and KEY not in caplog.text
    # The five answers before the refusal are cached (shard_size was not reached), nothing more sent.
    assert set(GenerationCache(tmp_path / "cache").load()["id"]) == ids_of(prompts, fake.answered)
    assert len(fake.answered) == 5 and len(fake.received) == 6
    assert not (tmp_path / "out" / "traces.parquet").exists()


def test_no_server_reachable_stops_naming_the_urls(tmp_path: Path) -> None:
    fake = FakeTeacher()
    fake.die_after = 4  # answers four questions, then stops listening
    closed = closed_port_url()
    with_user = closed.replace("http://", "http://user:hunter2@")
    prompts = prompt_table(12)
    cfg = traces_cfg([teacher([with_user, fake.url], concurrency=1, timeout_s=5.0)], shard_size=100)
    message = stopped_run(fake, prompts, cfg, tmp_path)
    assert message.startswith("teacher tiny-a: no server reachable at")
    assert closed in message and fake.url in message and "hunter2" not in message
    assert set(GenerationCache(tmp_path / "cache").load()["id"]) == ids_of(prompts, fake.answered)
    assert len(fake.answered) == 4


def test_failure_rate_guard_stops_a_broken_server(server: FakeTeacher, tmp_path: Path) -> None:
    prompts = marked_prompts(40, {k: "ERROR500" for k in range(0, 40, 2)})  # half of them fail
    cfg = traces_cfg(
        [teacher([server.url], max_retries=0, concurrency=2)],
        shard_size=100,
        max_failure_rate=0.2,
        min_results_for_rate=10,
    )
    with pytest.raises(PipelineError) as err:
        run_traces(prompts, cfg, 3, tmp_path / "out", tmp_path / "cache")
    message = str(err.value)
    assert message.startswith("teacher tiny-a: ") and "traces.max_failure_rate 0.2" in message
    assert "HTTP 500" in message
    cached = set(GenerationCache(tmp_path / "cache").load()["id"])
    answered = ids_of(prompts, server.answered)
    # Nothing new is sent after the stop, and every answer that came back (on the wire at the stop
    # included) is cached.
    assert cached and cached == answered
    assert len(server.received) < 20  # stopped early: not every prompt was sent
    assert not (tmp_path / "out" / "traces.parquet").exists()


def test_failure_rate_guard_waits_for_enough_results(server: FakeTeacher, tmp_path: Path) -> None:
    prompts = marked_prompts(8, {0: "ERROR500", 5: "ERROR500"})
    cfg = traces_cfg([teacher([server.url], max_retries=0)], max_failure_rate=0.1)  # 25% of 8 < 20
    stats = run_traces(prompts, cfg, 3, tmp_path / "out", tmp_path / "cache")
    assert stats["funnel"]["rows_out"] == 6 and stats["funnel"]["removed"] == {"request_error": 2}


class InterruptedBackend:
    """Answers three requests, then raises KeyboardInterrupt (Ctrl-C during a run)."""

    def __init__(self) -> None:
        self.closed = False

    def generate(self, requests: Iterable[GenRequest]) -> Iterator[GenResult | GenError]:
        for k, r in enumerate(requests):
            if k == 3:
                raise KeyboardInterrupt
            yield GenResult(r.key, r.id, "an answer", "stop", 3, 2)

    def stop(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def figures(self) -> dict[str, Any]:
        return {}


def test_interrupt_caches_finished_answers(tmp_path: Path) -> None:
    backend = InterruptedBackend()
    prompts = prompt_table(8)

    def factory(cfg: TeacherConfig) -> InterruptedBackend:
        return backend

    cfg = traces_cfg([teacher(["http://127.0.0.1:9/v1"])], shard_size=100)
    with pytest.raises(KeyboardInterrupt):
        run_traces(prompts, cfg, 3, tmp_path / "out", tmp_path / "cache", factory)
    assert GenerationCache(tmp_path / "cache").load().height == 3 and backend.closed


def test_unset_api_key_variable_stops_before_sending(
    server: FakeTeacher, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEST_TEACHER_KEY_UNSET", raising=False)
    cfg = traces_cfg([teacher([server.url], api_key_env="TEST_TEACHER_KEY_UNSET")])
    with pytest.raises(PipelineError, match="environment variable TEST_TEACHER_KEY_UNSET is not set"):
        run_traces(prompt_table(3), cfg, 3, tmp_path / "out", tmp_path / "cache")
    assert server.received == []
