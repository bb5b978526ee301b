"""The `openai` backend over a fleet of two local servers: per-server concurrency, and a server dying.

Each server is a stdlib OpenAI-compatible server on 127.0.0.1 that answers after a short delay and
records every question it received and answered and how many requests it held at once. A dying
server answers K questions, then closes the connections of the requests it holds and of the next
ones without an answer, and stops listening, as a crashed `vllm serve` (or its proxy) would.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl

from builders.traces.run import run_traces
from tests.test_traces_common import prompt_table, traces_cfg
from tests.test_traces_failures import completion, ids_of, teacher


class Gauge:
    """Requests held at once, and the most seen."""

    def __init__(self) -> None:
        self.now = self.peak = 0
        self.lock = threading.Lock()

    def add(self, k: int) -> None:
        with self.lock:
            self.now += k
            self.peak = max(self.peak, self.now)


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing and answers JSON."""

    def log_message(self, *args: object) -> None:
        pass

    def question(self) -> str:
        """The last message of the chat request."""
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        return str(body["messages"][-1]["content"])

    def reply(self, data: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class FleetServer:
    """Answers each question after 1 to 2.5 x `delay_s` (so requests overlap out of step).

    With `die_after`, it dies after that many answers: it drops the requests it holds and the next
    ones it receives (the connection closes without an answer), `drops` in all, then stops listening.
    """

    def __init__(self, fleet: Gauge, delay_s: float, die_after: int | None = None, drops: int = 8) -> None:
        self.gauge, self.dead, self.dropped = Gauge(), False, 0
        self.received: list[str] = []  # every request's question (retries included)
        self.answered: list[str] = []
        lock = threading.Lock()
        server = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                question = self.question()
                for g in (server.gauge, fleet):
                    g.add(1)
                held = True
                try:
                    with lock:
                        server.received.append(question)
                        delay = 0.0 if server.dead else delay_s * (1 + len(server.received) % 4 / 2)
                    time.sleep(delay)
                    with lock:
                        if server.dead:
                            server.dropped += 1
                            if server.dropped == drops:
                                threading.Thread(target=server.close).start()
                            return  # dropped
                        server.answered.append(question)
                        server.dead = len(server.answered) == die_after
                    for g in (server.gauge, fleet):  # before the answer: the client may send the next at once
                        g.add(-1)
                    held = False
                    self.reply(completion(question))
                finally:
                    if held:
                        for g in (server.gauge, fleet):
                            g.add(-1)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_dead_server_loses_nothing_and_answers_nothing_twice(tmp_path: Path) -> None:
    gauge = Gauge()
    alive, dying = FleetServer(gauge, 0.05), FleetServer(gauge, 0.05, die_after=15)
    prompts = prompt_table(80)
    cfg = traces_cfg([teacher([alive.url, dying.url], concurrency=4, timeout_s=10.0)], shard_size=16)
    try:
        stats = run_traces(prompts, cfg, 3, tmp_path / "out", tmp_path / "cache")  # no PipelineError
    finally:
        alive.close()
        if dying.dropped < 8:
            dying.close()

    traces = pl.read_parquet(tmp_path / "out" / "traces.parquet")
    assert sorted(traces["id"]) == sorted(prompts["id"])  # every prompt exactly once
    assert pl.read_parquet(tmp_path / "out" / "removed.parquet").height == 0
    assert stats["funnel"]["rows_out"] == 80
    assert len(dying.answered) == 15
    dropped = set(dying.received) - set(dying.answered)
    assert dying.dropped >= 8 and len(dropped) == dying.dropped  # it died holding requests, and after
    assert len(set(dying.received)) == len(dying.received)  # a dropped request was not sent there again
    assert dropped <= set(alive.answered)  # but to the other server
    both = Counter(alive.answered + dying.answered)
    assert set(both) == set(prompts["question"]) and set(both.values()) == {1}  # none answered twice
    assert ids_of(prompts, alive.answered) | ids_of(prompts, dying.answered) == set(traces["id"])


def test_concurrency_is_per_server(tmp_path: Path) -> None:
    gauge, c = Gauge(), 3
    servers = [FleetServer(gauge, 0.05), FleetServer(gauge, 0.05)]
    try:
        cfg = traces_cfg([teacher([s.url for s in servers], concurrency=c, timeout_s=10.0)], shard_size=16)
        run_traces(prompt_table(60), cfg, 3, tmp_path / "out", tmp_path / "cache")
    finally:
        for s in servers:
            s.close()
    assert [s.gauge.peak for s in servers] == [c, c]  # never more than c at one server
    assert gauge.peak == 2 * c  # the fleet holds c per server at once
    assert all(len(s.answered) >= 20 for s in servers)  # least busy first: shared about evenly
