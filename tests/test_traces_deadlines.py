"""No transient fault is final, no answer paid twice: the `openai` backend against a local server
that hangs, trickles, answers empty or names another model (`FakeTeacher`), and the `openai_batch`
backend against a local Batch API giving empty answers and another model's name (`BatchServer`
with canned answers).

Each test counts the requests per prompt at the server (what was paid), reads the cache, and checks
the exit code and the one line of a stop.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from tqdm import tqdm

from builders.generation.api import ApiTeacher
from builders.generation.base import GenRequest
from builders.generation.batch_records import BatchRecords
from builders.generation.budget import Budget
from builders.generation.cache import GenerationCache
from builders.generation.registry import parse_teacher
from builders.traces.__main__ import main
from builders.traces.run import run_traces
from core.errors import PipelineError
from tests.batchserver import EMPTY_ALWAYS, EMPTY_ONCE, BatchServer
from tests.failing import stage_fails
from tests.test_traces_common import traces_cfg
from tests.test_traces_failures import HANG, TRICKLE, TRICKLE_S, FakeTeacher, marked_prompts, teacher

REPO = Path(__file__).resolve().parents[1]
TERMS = {"license": "Apache-2.0", "outputs_may_train_models": True, "commercial_use": True, "url": None}
IMPOSTOR = "gpt-3.5-turbo-impostor"


@pytest.fixture
def server() -> Iterator[FakeTeacher]:
    fake = FakeTeacher()
    yield fake
    fake.close()


@pytest.fixture(autouse=True)
def quiet_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("builders.generation.loop.tqdm", partial(tqdm, disable=True))  # stderr: the one line


def stage_argv(tmp_path: Path, prompts: pl.DataFrame, taught: dict[str, Any], **traces: Any) -> list[str]:
    """The stage's command line over `prompts` with one teacher, written under `tmp_path`."""
    prompts.write_parquet(tmp_path / "prompts.parquet")
    section = {"teachers": [taught], "min_new_tokens": 4, **traces}
    params = {"base": {"seed": 3}, "license": {"teachers": {"tiny-a": TERMS}}, "traces": section}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return ["--params", str(tmp_path / "params.yaml"), "--prompts", str(tmp_path / "prompts.parquet"),
            "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache")]  # fmt: skip


def asked(server: FakeTeacher, prompts: pl.DataFrame) -> dict[str, int]:
    """Requests per prompt id at the server (0 for a prompt never asked)."""
    counts = Counter(server.received)
    return {pid: counts[q] for pid, q in zip(prompts["id"], prompts["question"], strict=True)}


def cached(tmp_path: Path) -> pl.DataFrame:
    return GenerationCache(tmp_path / "cache").load()


def removed(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """id -> (reason, detail) of removed.parquet."""
    frame = pl.read_parquet(tmp_path / "out" / "removed.parquet")
    return {i: (r, d) for i, r, d in frame.select("id", "reason", "detail").iter_rows()}


def meta(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "out" / "meta" / "tiny-a.json").read_text())


# -- deadlines ---------------------------------------------------------------------------------------


def test_hung_requests_are_retried_then_request_errors(server: FakeTeacher, tmp_path: Path) -> None:
    marks = {3: HANG, 13: HANG}  # 10% of the prompts never get an answer
    prompts = marked_prompts(20, marks)
    hung = {prompts["id"][k] for k in marks}
    argv = stage_argv(tmp_path, prompts, teacher([server.url], timeout_s=0.5, max_retries=1))
    assert main(argv) == 0
    assert asked(server, prompts) == {p: 2 if p in hung else 1 for p in prompts["id"]}  # retried once
    assert removed(tmp_path) == {p: ("request_error", "ReadTimeout after 1 retry") for p in hung}
    assert set(cached(tmp_path)["id"]) == set(prompts["id"]) - hung

    server.healthy = True  # the rerun asks the hung prompts only, once each
    server.received.clear()
    assert main(argv) == 0
    assert asked(server, prompts) == {p: int(p in hung) for p in prompts["id"]}
    assert pl.read_parquet(tmp_path / "out" / "traces.parquet").height == 20


def test_kill_with_hung_requests_in_flight_loses_no_finished_answer(
    server: FakeTeacher, tmp_path: Path
) -> None:
    marks = {5: HANG, 11: HANG, 17: HANG}
    prompts = marked_prompts(20, marks)
    hung = {prompts["id"][k] for k in marks}
    flush_s = 0.5
    taught = teacher([server.url], timeout_s=60.0, max_retries=0, concurrency=32)
    argv = stage_argv(tmp_path, prompts, taught, shard_size=1000, flush_s=flush_s)
    stage = subprocess.Popen([sys.executable, "-m", "builders.traces", *argv], cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while len(server.received) < 20 and stage.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(server.answered) == 17 and len(server.received) == 20  # the rest hang, in flight
        time.sleep(flush_s + 2.0)  # flush_s, and room for a loaded machine
        assert stage.poll() is None  # still waiting for the hung requests
    finally:
        stage.send_signal(signal.SIGKILL)
        stage.wait()
    assert stage.returncode == -signal.SIGKILL
    assert set(cached(tmp_path)["id"]) == set(prompts["id"]) - hung  # every finished answer

    server.healthy = True
    server.received.clear()
    assert main(argv) == 0
    assert asked(server, prompts) == {p: int(p in hung) for p in prompts["id"]}  # only the unfinished
    assert pl.read_parquet(tmp_path / "out" / "traces.parquet").height == 20


def test_a_trickled_body_is_bounded_by_timeout(server: FakeTeacher, tmp_path: Path) -> None:
    prompts = marked_prompts(4, {2: TRICKLE})
    slow = prompts["id"][2]
    timeout_s = 3.0  # longer than the gap between two bytes: only the whole answer's deadline ends it
    cfg = traces_cfg([teacher([server.url], timeout_s=timeout_s, max_retries=0)])
    run_traces(prompts, cfg, 3, tmp_path / "out", tmp_path / "cache")
    assert server.trickled <= timeout_s / TRICKLE_S + 1  # of a body of ~200 bytes (~400 s)
    assert removed(tmp_path) == {slow: ("request_error", "ReadTimeout after 0 retries")}
    assert asked(server, prompts) == dict.fromkeys(prompts["id"], 1)
    assert set(cached(tmp_path)["id"]) == set(prompts["id"]) - {slow}


# -- empty answers -----------------------------------------------------------------------------------


def test_an_empty_answer_once_is_asked_again(server: FakeTeacher, tmp_path: Path) -> None:
    marks = {2: "EMPTYONCE", 9: "BLANKONCE", 15: "NULLONCE"}  # 10%: "", blank, null content
    prompts = marked_prompts(30, marks)
    again = {prompts["id"][k] for k in marks}
    argv = stage_argv(tmp_path, prompts, teacher([server.url], max_retries=1))
    assert main(argv) == 0
    assert asked(server, prompts) == {p: 2 if p in again else 1 for p in prompts["id"]}
    traces = pl.read_parquet(tmp_path / "out" / "traces.parquet")
    assert traces.height == 30 and (traces["response"] == "answer: " + traces["question"]).all()
    assert removed(tmp_path) == {}
    cache = cached(tmp_path)
    assert cache.height == 30 and (cache["response"].str.strip_chars() != "").all()


def test_a_truly_empty_answer_is_final_after_the_retries(server: FakeTeacher, tmp_path: Path) -> None:
    marks = {1: "EMPTYALWAYS", 4: "EMPTYLENGTH"}
    prompts = marked_prompts(6, marks)
    empty, cut = prompts["id"][1], prompts["id"][4]
    argv = stage_argv(tmp_path, prompts, teacher([server.url], max_retries=2))
    assert main(argv) == 0
    # asked three times (two retries); an empty answer the token limit cut is not asked again
    assert asked(server, prompts) == {p: 3 if p == empty else 1 for p in prompts["id"]}
    assert removed(tmp_path) == {
        empty: ("empty_response", "finish_reason=stop"),
        cut: ("truncated", "finish_reason=length"),
    }
    cache = cached(tmp_path)
    assert cache.height == 6 and cache.filter(pl.col("id") == empty)["response"].to_list() == [""]

    server.received.clear()  # final: a rerun asks nothing
    assert main(argv) == 0
    assert server.received == [] and removed(tmp_path)[empty][0] == "empty_response"


def test_empty_answers_thrown_away_count_against_the_budget(server: FakeTeacher, tmp_path: Path) -> None:
    prompts = marked_prompts(10, {k: "EMPTYONCE" for k in (0, 5)})
    price = {"input": 1000.0, "output": 2000.0}  # every answer bills 11 + 7 tokens: 0.025
    cfg = traces_cfg([teacher([server.url], price=price, max_cost=100.0)])
    run_traces(prompts, cfg, 3, tmp_path / "out", tmp_path / "cache")
    run = json.loads((tmp_path / "out" / "run.json").read_text())["teachers"]["tiny-a"]
    assert len(server.received) == 12 and run["cost"] == pytest.approx(12 * 0.025)  # the 2 empty ones too
    assert run["empty_retries"] == 2


def test_an_empty_answer_is_asked_again_only_while_the_budget_has_room() -> None:
    budget = Budget("t", price_in=1.0, price_out=1.0, max_cost=100.0)
    msgs = [{"role": "user", "content": "q"}]
    reqs = [GenRequest(k, k, msgs, max_tokens=10, seed=0, prompt_tokens=10) for k in ("a", "b")]
    gate = budget.gate(reqs, waits=False)
    assert [next(gate), next(gate)] == reqs and budget.reserved == 2 * 37  # each: 10 x 1.05 + 16, + 10
    # `a` answers empty, billing 11 each time; asking again costs at most 11 + 10, which its own
    # reservation covers; `b`'s reservation stays whole
    assert [budget.discard("a", 11, 0, 10) for _ in range(4)] == [True, True, True, False]
    assert budget.spent == 44  # 44 + 74 - (37 - 21) > 100


# -- the served model --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "revision", "served", "ok"),
    [
        ("gpt-4o-mini", None, "gpt-4o-mini", True),
        ("gpt-4o-mini", None, "gpt-4o-mini-2024-07-18", True),  # a dated snapshot
        ("gpt-4", None, "gpt-4-0613", True),
        ("claude-3-5-sonnet", None, "claude-3-5-sonnet-20241022", True),
        ("gpt-4o-mini", "0" * 40, "gpt-4o-mini-2024-07-18", True),  # a commit pins no snapshot
        ("gpt-4o-mini", "gpt-4o-mini-2024-07-18", "gpt-4o-mini-2024-07-18", True),  # the pinned one
        ("gpt-4o-mini", "gpt-4o-mini-2024-07-18", "gpt-4o-mini-2025-01-31", False),  # another snapshot
        ("gpt-4o-mini", None, "gpt-4o-mini-2024-13-45", False),  # not a date
        ("gpt-4o-mini", None, "gpt-4o-mini-large", False),
        ("gpt-4o", None, "gpt-4o-mini", False),
        ("gpt-4o-mini", None, IMPOSTOR, False),
        ("fake-org/teacher", None, "fake-org/teacher-0613", True),
    ],
)
def test_served_model_rule(model: str, revision: str | None, served: str, ok: bool) -> None:
    cfg = parse_teacher({**teacher(["http://127.0.0.1:9/v1"]), "model": model, "revision": revision})
    assert isinstance(cfg, ApiTeacher) and cfg.serves(served) is ok
    assert parse_teacher({**cfg.model_dump(), "allow_model_alias": True}).serves(served)


def test_an_impostor_stops_the_run_and_nothing_of_it_is_cached(
    server: FakeTeacher, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.served = IMPOSTOR
    prompts = marked_prompts(8, {})
    argv = stage_argv(tmp_path, prompts, teacher([server.url]))
    line = stage_fails(main, argv, capsys, rf"^traces: teacher tiny-a: {server.url} answered as model ")
    assert f"'{IMPOSTOR}', not the configured 'fake-org/teacher' (revision {'0' * 40})" in line
    assert "allow_model_alias: true" in line
    assert len(server.received) == 1  # the URL holds one request until its first answer: the impostor's
    assert cached(tmp_path).height == 0 and not (tmp_path / "out" / "traces.parquet").exists()

    # The same model under another name, allowed: answered, and the name recorded.
    server.received.clear()
    argv = stage_argv(tmp_path, prompts, teacher([server.url], allow_model_alias=True))
    assert main(argv) == 0
    assert asked(server, prompts) == dict.fromkeys(prompts["id"], 1)
    assert meta(tmp_path)["served_models"] == [IMPOSTOR]
    assert set(cached(tmp_path)["served_model"]) == {IMPOSTOR}


def test_a_dated_snapshot_is_accepted_and_recorded(server: FakeTeacher, tmp_path: Path) -> None:
    server.served = "gpt-4o-mini-2024-07-18"
    prompts = marked_prompts(6, {})
    cfg = traces_cfg([teacher([server.url], model="gpt-4o-mini")])
    stats = run_traces(prompts, cfg, 3, tmp_path / "out", tmp_path / "cache")
    assert stats["funnel"]["rows_out"] == 6 and meta(tmp_path)["served_models"] == ["gpt-4o-mini-2024-07-18"]

    # The snapshot pinned in `revision` is part of the cache key: another one is refused.
    server.served = "gpt-4o-mini-2025-01-31"
    cfg = traces_cfg([teacher([server.url], model="gpt-4o-mini", revision="gpt-4o-mini-2024-07-18")])
    with pytest.raises(PipelineError, match="answered as model 'gpt-4o-mini-2025-01-31', not the configured"):
        run_traces(prompts, cfg, 3, tmp_path / "out2", tmp_path / "cache")


def test_served_models_are_those_of_the_released_rows(server: FakeTeacher, tmp_path: Path) -> None:
    prompts = marked_prompts(6, {})
    cfg = traces_cfg([teacher([server.url], model="gpt-4o-mini")])
    server.served = "gpt-4o-mini-2024-07-18"
    run_traces(prompts.head(3), cfg, 3, tmp_path / "out", tmp_path / "cache")
    server.served = "gpt-4o-mini-2024-08-06"  # the alias moved between two runs
    run_traces(prompts, cfg, 3, tmp_path / "out", tmp_path / "cache")
    first = meta(tmp_path)["served_models"]
    assert first == ["gpt-4o-mini-2024-07-18", "gpt-4o-mini-2024-08-06"]
    run_traces(prompts.head(3), cfg, 3, tmp_path / "out", tmp_path / "cache")  # a function of the rows
    assert meta(tmp_path)["served_models"] == ["gpt-4o-mini-2024-07-18"]


# -- the batch backend -------------------------------------------------------------------------------


@pytest.fixture
def batches(tmp_path: Path) -> Iterator[BatchServer]:
    fake = BatchServer(None, tmp_path / "batches")
    yield fake
    fake.close()


def batch_teacher(url: str, **kw: Any) -> dict[str, Any]:
    return {"name": "tiny-a", "backend": "openai_batch", "model": "fake-org/teacher", "revision": "0" * 40,
            "base_url": url, "max_model_len": 256, "poll_s": 0.2, "max_resubmits": 1,
            "sampling": {"temperature": 1.0, "top_p": 1.0, "max_tokens": 16, "seed": 1}, **kw}  # fmt: skip


def test_batch_empty_answers_are_resubmitted(batches: BatchServer, tmp_path: Path) -> None:
    prompts = marked_prompts(6, {1: EMPTY_ONCE, 4: EMPTY_ALWAYS})
    cfg = traces_cfg([batch_teacher(batches.url)])
    run_traces(prompts, cfg, 3, tmp_path / "out", tmp_path / "cache")
    (_, first), (_, again) = batches.created
    assert len(first) == 6 and sorted(batches.questions[k] for k in again) == sorted(
        prompts["question"][[1, 4]]
    )
    assert removed(tmp_path) == {prompts["id"][4]: ("empty_response", "finish_reason=stop")}
    assert cached(tmp_path).height == 6  # the truly empty one is final: a rerun submits nothing
    run_traces(prompts, cfg, 3, tmp_path / "out", tmp_path / "cache")
    assert len(batches.created) == 2


def test_batch_impostor_stops_and_is_collected_once_allowed(batches: BatchServer, tmp_path: Path) -> None:
    batches.served = IMPOSTOR
    prompts = marked_prompts(6, {})
    cfg = traces_cfg([batch_teacher(batches.url)])
    with pytest.raises(PipelineError) as err:
        run_traces(prompts, cfg, 3, tmp_path / "out", tmp_path / "cache")
    ((bid, _),) = batches.created
    assert str(err.value).startswith(
        f"teacher tiny-a: {batches.url} (batch {bid}) answered as model '{IMPOSTOR}'"
    )
    assert cached(tmp_path).height == 0 and len(BatchRecords(tmp_path / "cache").load()) == 1  # kept

    cfg = traces_cfg([batch_teacher(batches.url, allow_model_alias=True)])
    run_traces(prompts, cfg, 3, tmp_path / "out", tmp_path / "cache")
    assert len(batches.created) == 1  # collected, not submitted again: paid once
    assert cached(tmp_path).height == 6 and meta(tmp_path)["served_models"] == [IMPOSTOR]
