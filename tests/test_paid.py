"""Paying for a teacher: rate limits are back-pressure, a budget is never passed, the quota stops a run.

Against `tests/paidserver.py`, a local server that limits requests and tokens per window and
answers with OpenAI's headers and `usage`.
"""

from __future__ import annotations

import json
import threading
import time
from email.utils import formatdate
from functools import partial
from pathlib import Path

import polars as pl
import pytest
import yaml
from tqdm import tqdm

from builders.generation.base import GenRequest, GenResult
from builders.generation.budget import Budget
from builders.generation.cache import GenerationCache
from builders.generation.ratelimit import UrlPacer, parse_duration, retry_after_s
from builders.traces.__main__ import main
from builders.traces.run import run_traces
from core.chat import build_messages
from core.errors import PipelineError
from tests.failing import stage_fails
from tests.paidserver import PaidServer, chars
from tests.test_traces_common import prompt_table, traces_cfg
from tests.test_traces_failures import ids_of, teacher

PRICE = {"input": 1000.0, "output": 2000.0}  # per million tokens: 0.001 and 0.002 a token


def test_durations_and_retry_after() -> None:
    assert parse_duration("1s") == 1.0 and parse_duration("6m0s") == 360.0
    assert parse_duration("20ms") == pytest.approx(0.02) and parse_duration("1h2m3.5s") == 3723.5
    assert parse_duration("0.25") == 0.25 and parse_duration("soon") is None
    assert retry_after_s({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_s({"retry-after": "2"}) == 2.0
    date = retry_after_s({"retry-after": formatdate(time.time() + 30, usegmt=True)})
    assert date is not None and 25 < date <= 30
    assert retry_after_s({}) is None


def test_pacer_bounds_the_room_whatever_order_requests_reach_the_server() -> None:
    pacer = UrlPacer(ceiling=64)
    first = pacer.send(0.0, 10.0)
    headers = {"x-ratelimit-limit-requests": "6", "x-ratelimit-reset-requests": "1s"}
    pacer.heard(0.0, {**headers, "x-ratelimit-remaining-requests": "5"}, first)
    pacer.done(first)
    burst = [pacer.send(0.01, 10.0) for _ in range(5)]  # the rest of the window, sent together
    assert pacer.wait(0.01, 10.0) == pytest.approx(0.99)  # full until the reset
    # The server took them in reverse order (the last one sent saw the most room left); their
    # answers come back in the order they were sent.
    for k, ticket in enumerate(burst):
        pacer.heard(0.02, {**headers, "x-ratelimit-remaining-requests": str(k)}, ticket)
        pacer.done(ticket)
        assert pacer.room("requests", 0.02) <= 0 and pacer.wait(0.02, 10.0) > 0.9
    assert pacer.wait(1.05, 10.0) == 0 and pacer.room("requests", 1.05) == 6  # reset: the whole limit


@pytest.mark.parametrize("delay_s", [0.01, 0.4])  # answers at once; answers that take a while
def test_rate_limits_are_back_pressure_not_failures(tmp_path: Path, delay_s: float) -> None:
    n, per_window, tokens_per_window, window_s = 30, 6, 200, 1.0
    prompts = prompt_table(n)
    max_tokens = 16
    costs = [chars(build_messages(s, q)) // 4 + max_tokens
             for s, q in zip(prompts["system_prompt"], prompts["question"], strict=True)]  # fmt: skip
    floor = max(n / per_window, sum(costs) / tokens_per_window) * window_s
    server = PaidServer(requests=per_window, tokens=tokens_per_window, window_s=window_s, delay_s=delay_s)
    cfg = traces_cfg(
        [teacher([server.url], concurrency=64, max_retries=0, timeout_s=10.0, backoff_s=0.1,
                 sampling={"temperature": 1.0, "top_p": 1.0, "max_tokens": max_tokens, "seed": 1})],
        min_response_chars=0, remove_truncated=False,
    )  # fmt: skip
    try:
        start = time.monotonic()
        stats = run_traces(prompts, cfg, 3, tmp_path / "out", tmp_path / "cache")
        wall = time.monotonic() - start
    finally:
        server.close()
    traces = pl.read_parquet(tmp_path / "out" / "traces.parquet")
    assert sorted(traces["id"]) == sorted(prompts["id"])  # every prompt answered
    assert stats["funnel"]["removed"] == {}  # no request_error
    requests = len(server.received)
    run = json.loads((tmp_path / "out" / "run.json").read_text())["teachers"]["tiny-a"]
    print(f"{requests} requests, {server.throttled} 429s, wall {wall:.2f}s, floor {floor:.2f}s "
          f"({wall / floor:.2f}x); run.json {run}")  # fmt: skip
    assert server.throttled <= 0.10 * requests
    assert run["http_429"] == server.throttled and run["requests_sent"] == requests
    assert wall <= 1.3 * floor


def test_own_rpm_ceiling_paces_the_fleet(tmp_path: Path) -> None:
    server = PaidServer()  # no limits of its own
    cfg = traces_cfg([teacher([server.url], concurrency=32, rpm=600, timeout_s=10.0)], min_response_chars=0)
    try:
        start = time.monotonic()
        run_traces(prompt_table(30), cfg, 3, tmp_path / "out", tmp_path / "cache")
        wall = time.monotonic() - start
    finally:
        server.close()
    times = server.received_at
    busiest = max(sum(t <= s < t + 1.0 for s in times) for t in times)
    assert len(times) == 30 and busiest <= 10 + 1  # 600 a minute: 10 a second, evenly spaced
    assert wall >= 2.8


def request(key: str, max_tokens: int = 10) -> GenRequest:
    return GenRequest(key, key, [{"role": "user", "content": "x" * 20}], max_tokens, 0, prompt_tokens=20)


def test_budget_gate_without_waiting_ends_at_the_first_request_over() -> None:
    budget = Budget("t", price_in=0.001, price_out=0.002, max_cost=0.2)
    worst = budget.worst(request("a"))
    gate = budget.gate((request(str(k)) for k in range(10)), waits=False)
    sent = list(gate)  # nothing settles while a batch is written: reservations only
    assert len(sent) == int(0.2 // worst) == budget.admitted and budget.stopped


def test_budget_gate_waits_for_answers_in_flight() -> None:
    budget = Budget("t", price_in=0.001, price_out=0.002, max_cost=0.2)
    gate = budget.gate((request(str(k)) for k in range(10)), waits=True)
    taken: list[GenRequest] = []
    puller = threading.Thread(target=lambda: taken.extend(gate))
    puller.start()
    settled = 0
    while puller.is_alive() or settled < len(taken):
        if settled < len(taken):  # each answer costs much less than its worst case
            budget.settle(GenResult(taken[settled].key, "", "ok", "stop", 20, 2))
            settled += 1
        time.sleep(0.01)
    puller.join()
    assert budget.spent == pytest.approx(settled * 0.024) and budget.total <= 0.2
    worst = budget.worst(request("a"))
    assert len(taken) > 0.2 // worst  # more than the worst cases alone allow
    # the gate stops only with nothing in flight: the k-th goes when k - 1 answers + its worst case fit
    assert budget.stopped and len(taken) == max(k for k in range(1, 11) if (k - 1) * 0.024 + worst <= 0.2)


def test_exhausted_quota_stops_the_run(tmp_path: Path) -> None:
    server = PaidServer(quota=5)
    cfg = traces_cfg([teacher([server.url], concurrency=1, timeout_s=10.0)], shard_size=100)
    try:
        with pytest.raises(PipelineError, match="insufficient_quota") as err:
            run_traces(prompt_table(12), cfg, 3, tmp_path / "out", tmp_path / "cache")
    finally:
        server.close()
    assert "teacher tiny-a" in str(err.value) and server.url in str(err.value)
    assert GenerationCache(tmp_path / "cache").load().height == 5


def _params(path: Path, url: str, max_cost: float) -> Path:
    priced = teacher([url], concurrency=4, price=PRICE, max_cost=max_cost, timeout_s=10.0)
    terms = {"license": "Apache-2.0", "outputs_may_train_models": True, "commercial_use": True, "url": None}
    params = {"base": {"seed": 5}, "license": {"teachers": {"tiny-a": terms}},
              "traces": {"teachers": [priced], "shard_size": 100, "min_new_tokens": 4,
                         "remove_truncated": False, "min_response_chars": 0}}  # fmt: skip
    path.write_text(yaml.safe_dump(params))
    return path


def test_budget_stops_sending_then_a_higher_budget_sends_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("builders.generation.loop.tqdm", partial(tqdm, disable=True))  # stderr: the one line
    n, budget = 40, 0.5
    prompts = prompt_table(n)
    prompts.write_parquet(tmp_path / "prompts.parquet")
    server = PaidServer()
    argv = ["--params", str(tmp_path / "params.yaml"), "--prompts", str(tmp_path / "prompts.parquet"),
            "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache")]  # fmt: skip
    try:
        _params(tmp_path / "params.yaml", server.url, budget)
        line = stage_fails(main, argv, capsys, r"^traces: teacher tiny-a: budget reached: spent ")
        spent = (server.prompt_tokens * PRICE["input"] + server.completion_tokens * PRICE["output"]) / 1e6
        answered = list(server.answered)
        assert 0 < len(answered) < n and spent <= budget
        assert f"spent {spent:.4f} by usage" in line and f"{budget - spent:.4f} left of max_cost 0.5" in line
        assert f"{n - len(answered)} prompts not sent" in line
        cached = GenerationCache(tmp_path / "cache").load()
        assert set(cached["id"]) == ids_of(prompts, answered)  # every answer is cached
        assert not (tmp_path / "out" / "traces.parquet").exists()

        server.received.clear()
        _params(tmp_path / "params.yaml", server.url, 10.0)
        assert main(argv) == 0
    finally:
        server.close()
    assert sorted(server.received) == sorted(set(prompts["question"]) - set(answered))  # exactly the rest
    assert pl.read_parquet(tmp_path / "out" / "traces.parquet").height == n
    run = json.loads((tmp_path / "out" / "run.json").read_text())["teachers"]["tiny-a"]
    assert run["sent"] == n - len(answered) and run["cached_before_run"] == len(answered)
    total = (server.prompt_tokens * PRICE["input"] + server.completion_tokens * PRICE["output"]) / 1e6
    assert run["spent_total"] == pytest.approx(total) and run["max_cost"] == 10.0
    print(line)
