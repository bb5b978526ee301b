"""The `verify` stage on a small trace table: verdict columns, the removal policy, the stats, and a
judge of open answers (an `openai` backend against a local judge server), cached and resumable."""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import builders.verify.run as verify_run
from answers.check import check_frame
from builders.generation.cache import GenerationCache
from builders.verify.__main__ import main
from builders.verify.judge import JudgePrompt, parse_verdict
from core.schema import PROMPT_SCHEMA, TRACE_FIELDS, VERIFY_FIELDS
from tests.test_traces_failures import FakeTeacher

SUMMARY = "A storm closed the harbour for three days and the fishing fleet stayed ashore."
# (submix, question, reference, has_options, {teacher: response})
CASES: list[tuple[str, str, str, bool, dict[str, str]]] = [
    ("flan2021", "Which planet is the largest?\nOPTIONS:\n- Mars\n- Jupiter\n- Venus", "Jupiter", True,
     {"ta": "Jupiter is a gas giant, far larger than the rest. So the answer is Jupiter.",
      "tb": "Mars is red and large. The answer is Mars."}),
    ("t0", "Is ice colder than steam? Answer yes or no.", "yes", False,
     {"ta": "Ice is frozen water and steam is hot. Answer: yes", "tb": "Steam is cold. Answer: no"}),
    ("cot", "A spider has 8 legs. How many legs do 3 spiders have?", "24", False,
     {"ta": "Each spider has 8 legs, and 3 x 8 = 24. The answer is 24.",
      "tb": "Each spider has 8 legs, and 3 x 8 = 32. The answer is 32."}),
    ("niv2", f"Summarize the article: {SUMMARY} Boats rocked at anchor.", SUMMARY, False,
     {"ta": f"In short: {SUMMARY}", "tb": "The article is about a festival in the mountains."}),
    ("niv2", "Summarize the report: the bridge reopened after repairs lasting a whole year.",
     "After a year of repairs the bridge is open to traffic again, officials said.", False,
     {"ta": "GARBLE The bridge.", "tb": "FAIL500 The bridge reopened."}),
]  # fmt: skip


def trace_table(cases: list[tuple[str, str, str, bool, dict[str, str]]] = CASES) -> pl.DataFrame:
    """Trace rows in the CONTRACTS.md layout (prompt columns + trace columns), sorted by (id, teacher)."""
    rows = []
    for k, (submix, question, reference, options, answers) in enumerate(cases):
        prompt = {
            "id": hashlib.sha256(f"q{k}".encode()).hexdigest()[:24], "submix": submix, "task_name": f"t{k}",
            "template_type": "zs_opt" if options else "zs_noopt", "has_options": options,
            "system_prompt_id": 1 + k % 2, "system_prompt": "Think step by step." if k % 2 else "",
            "question": question, "reference": reference,
        }  # fmt: skip
        for teacher, response in answers.items():
            rows.append({**prompt, "teacher": teacher, "teacher_model": f"org/{teacher}",
                         "response": response, "finish_reason": "stop", "prompt_tokens": 10,
                         "completion_tokens": 5})  # fmt: skip
    schema = pl.from_arrow(pa.schema([*PROMPT_SCHEMA, *TRACE_FIELDS]).empty_table()).schema  # type: ignore[union-attr]
    return pl.DataFrame(rows, schema=schema).sort("id", "teacher")


def write_params(path: Path, **verify: Any) -> Path:
    path.write_text(yaml.safe_dump({"verify": verify}), encoding="utf-8")
    return path


def run_stage(tmp: Path, traces: pl.DataFrame, row_group_size: int = 64, **verify: Any) -> tuple[int, Path]:
    """Write the traces, run `python -m builders.verify` in-process; (exit code, out folder)."""
    traces.write_parquet(tmp / "traces.parquet", row_group_size=row_group_size)
    params = write_params(tmp / "params.yaml", **verify)
    out = tmp / "out"
    argv = ["--params", str(params), "--traces", str(tmp / "traces.parquet"), "--out", str(out),
            "--cache", str(tmp / "cache")]  # fmt: skip
    return main(argv), out


def test_verdict_columns_flag_by_default_policy(tmp_path: Path) -> None:
    traces = trace_table()
    rc, out = run_stage(tmp_path, traces, drop_wrong=False)
    assert rc == 0
    verified = pl.read_parquet(out / "traces.parquet")
    schema = pq.read_schema(out / "traces.parquet")
    assert schema.names == [*traces.columns, *(f.name for f in VERIFY_FIELDS)]
    assert not schema.field("answer_check").nullable and schema.field("extracted_answer").nullable
    # every row kept (flagged), in order, with check_frame's verdicts
    assert verified.select(traces.columns).equals(traces)
    expected = check_frame(traces.select("question", "reference", "response", "has_options"))
    assert verified.select("answer_kind", "answer_check", "extracted_answer").equals(
        expected.drop("answer_reference")
    )
    got = {(r["task_name"], r["teacher"]): r["answer_check"] for r in verified.iter_rows(named=True)}
    assert got[("t0", "ta")] == "correct" and got[("t0", "tb")] == "wrong"  # multiple choice
    assert got[("t2", "ta")] == "correct" and got[("t2", "tb")] == "wrong"  # a number
    assert got[("t3", "ta")] == got[("t3", "tb")] == "unverifiable"  # open, no judge
    assert pl.read_parquet(out / "removed.parquet").height == 0

    stats = json.loads((out / "stats.json").read_text())
    assert stats["funnel"] == {"stage": "verify", "rows_in": 10, "rows_out": 10, "removed": {}}
    checks = stats["answer_checks"]
    assert checks["judge"] is None and checks["judged"] is None and checks["drop_wrong"] is False
    counted = (
        verified.group_by("teacher", "submix", "answer_kind", "answer_check").len()
        .pivot(on="answer_check", index=["teacher", "submix", "answer_kind"], values="len")
    )  # fmt: skip
    for c in checks["counts"]:
        row = counted.filter(
            (pl.col("teacher") == c["teacher"]) & (pl.col("submix") == c["submix"])
            & (pl.col("answer_kind") == c["answer_kind"])
        ).row(0, named=True)  # fmt: skip
        assert all(c[v] == (row.get(v) or 0) for v in ("correct", "wrong", "unverifiable")), c
    assert sum(c["correct"] + c["wrong"] + c["unverifiable"] for c in checks["counts"]) == 10
    run = json.loads((out / "run.json").read_text())
    assert run["rows"] == 10 and run["judge"] is None
    assert (tmp_path / "cache").is_dir()  # the DVC out exists even without a judge


def test_policy_removes_wrong_and_optionally_unverifiable(tmp_path: Path) -> None:
    traces = trace_table()
    (tmp_path / "a").mkdir()
    rc, out = run_stage(tmp_path / "a", traces)  # defaults: drop wrong, keep unverifiable
    assert rc == 0
    verified = pl.read_parquet(out / "traces.parquet")
    removed = pl.read_parquet(out / "removed.parquet")
    assert set(verified["answer_check"]) == {"correct", "unverifiable"}
    assert set(removed["reason"]) == {"wrong_answer"} and set(removed["stage"]) == {"verify"}
    assert removed.columns == ["id", "stage", "reason", "detail", "teacher", "answer_kind"]
    assert verified.height + removed.height == traces.height
    number = removed.join(traces, on=["id", "teacher"]).filter(pl.col("task_name") == "t2").row(0, named=True)
    detail = json.loads(number["detail"])
    assert detail["extracted"] == "32" and detail["reference"] == "24" and detail["checked_by"] == "rule"
    stats = json.loads((out / "stats.json").read_text())
    assert stats["funnel"]["removed"] == {"wrong_answer": removed.height}

    (tmp_path / "b").mkdir()
    rc, out = run_stage(tmp_path / "b", traces, drop_wrong=False, drop_unverifiable=True)
    assert rc == 0
    removed = pl.read_parquet(out / "removed.parquet")
    assert set(removed["reason"]) == {"unverifiable_answer"}
    assert set(pl.read_parquet(out / "traces.parquet")["answer_check"]) == {"correct", "wrong"}
    why = {json.loads(d)["why"] for d in removed["detail"]}
    assert "open answer, no judge configured" in why


def test_streaming_batches_give_the_same_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    traces = trace_table()
    outputs = []
    for name, batch_rows, group in (("one", 65_536, 64), ("many", 3, 4)):
        monkeypatch.setattr(verify_run, "BATCH_ROWS", batch_rows)
        (tmp_path / name).mkdir()
        rc, out = run_stage(tmp_path / name, traces, row_group_size=group)
        assert rc == 0
        outputs.append({f: (out / f).read_bytes() for f in ("removed.parquet", "stats.json")})
        outputs[-1]["rows"] = pl.read_parquet(out / "traces.parquet")
    assert outputs[0]["stats.json"] == outputs[1]["stats.json"]
    assert outputs[0]["rows"].equals(outputs[1]["rows"])
    assert pl.read_parquet(outputs[0]["removed.parquet"]).equals(
        pl.read_parquet(outputs[1]["removed.parquet"])
    )


def test_workers_give_the_bytes_of_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Row groups checked in two processes (batches smaller than a row group) write the bytes one
    process writes."""
    traces = pl.concat([trace_table()] * 7)
    monkeypatch.setattr(verify_run, "BATCH_ROWS", 4)
    outputs = []
    for workers in (1, 2):
        (tmp_path / str(workers)).mkdir()
        rc, out = run_stage(
            tmp_path / str(workers), traces, row_group_size=9, workers=workers, drop_wrong=True
        )
        assert rc == 0
        outputs.append(
            {f: (out / f).read_bytes() for f in ("traces.parquet", "removed.parquet", "stats.json")}
        )
        assert json.loads((out / "run.json").read_text())["workers"] == workers
    assert outputs[0] == outputs[1]
    assert pl.read_parquet(tmp_path / "2" / "out" / "removed.parquet").height > 0


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda t: t.drop("reference"), "missing columns ['reference']"),
        (
            lambda t: t.with_columns(answer_check=pl.lit("correct")),
            "already has the columns ['answer_check']",
        ),
    ],
)
def test_bad_input_fails_clearly(
    tmp_path: Path, mutate: Any, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out = run_stage(tmp_path, mutate(trace_table()))
    assert rc == 2 and expected in capsys.readouterr().err
    assert not (out / "traces.parquet").exists()


# --- the judge ------------------------------------------------------------------------------------

_FIELDS = re.compile(
    r"Reference answer:\n(?P<reference>.*)\n\nAnswer to grade:\n(?P<response>.*)\n\nDecide", re.S
)


class FakeJudge(FakeTeacher):
    """A local OpenAI-compatible judge: "Correct." when the graded answer contains the reference,
    else "Incorrect."; a reply without a verdict for GARBLE, HTTP 500 for FAIL500. Requests are
    answered one at a time, each after `delay_s`."""

    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__()
        self.delay_s = delay_s

    def answer(self, question: str, auth: str | None) -> tuple[tuple[int, bytes] | None, bool]:
        self.received.append(question)
        time.sleep(self.delay_s)
        m = _FIELDS.search(question)
        assert m is not None, question
        if "FAIL500" in m["response"]:
            return (500, b'{"error": "internal"}'), False
        text = "Hmm, hard to say." if "GARBLE" in m["response"] else (
            "Correct." if m["reference"] in m["response"] else "Incorrect. It misses the point.")  # fmt: skip
        self.answered.append(question)
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        usage = {"prompt_tokens": 50, "completion_tokens": 2}
        body = {"id": "j", "object": "chat.completion", "usage": usage, "choices": [choice]}
        return (200, json.dumps(body).encode()), False


def judge_config(url: str, **kw: Any) -> dict[str, Any]:
    """An openai judge; a Hub-like model name pinned to a commit (no tokenizer is needed offline)."""
    sampling = {"temperature": 0.0, "top_p": 1.0, "max_tokens": 8, "seed": 0}
    return {"name": "judge", "backend": "openai", "model": "fake-org/judge", "revision": "0" * 40,
            "base_urls": [url], "max_model_len": 2048, "concurrency": 1, "max_retries": 0,
            "backoff_s": 0.0, "timeout_s": 10.0, "sampling": sampling, **kw}  # fmt: skip


def test_judge_decides_open_answers_and_is_never_asked_twice(tmp_path: Path) -> None:
    server = FakeJudge()
    try:
        verify = {
            "drop_wrong": False,
            "judge": judge_config(server.url),
            "shard_size": 1,
            "max_failure_rate": 1.0,
        }
        rc, out = run_stage(tmp_path, trace_table(), **verify)
        assert rc == 0
        first = list(server.received)
        rc, out = run_stage(tmp_path, trace_table(), **verify)  # a rerun: only the failed request
        assert rc == 0 and len(server.received) == len(first) + 1
        assert "FAIL500" in server.received[-1] and sum("FAIL500" in q for q in first) == 1
    finally:
        server.close()
    assert len(first) == 4  # the four open rows (the FAIL500 one was sent once, failed, not cached)
    verified = pl.read_parquet(out / "traces.parquet")
    got = {(r["task_name"], r["teacher"]): r["answer_check"] for r in verified.iter_rows(named=True)}
    assert got[("t3", "ta")] == "correct" and got[("t3", "tb")] == "wrong"
    assert got[("t4", "ta")] == "unverifiable" and got[("t4", "tb")] == "unverifiable"
    assert got[("t0", "ta")] == "correct"  # closed kinds are still checked by rule
    stats = json.loads((out / "stats.json").read_text())["answer_checks"]
    assert stats["judged"] == {"rows": 4, "correct": 1, "wrong": 1, "unparseable": 1, "prompt_too_long": 0,
                               "request_error": 1}  # fmt: skip
    judge = stats["judge"]
    assert (
        judge["model"] == "fake-org/judge" and judge["revision"] == "0" * 40 and judge["backend"] == "openai"
    )
    assert judge["prompt_sha256"] == JudgePrompt.load(None).sha256
    assert len(GenerationCache(tmp_path / "cache").load()) == 3  # failures are never cached
    run = json.loads((out / "run.json").read_text())["judge"]
    assert run["cached_before_run"] == 3 and run["sent"] == 1  # the failed request, sent again


def test_a_new_judging_prompt_judges_again(tmp_path: Path) -> None:
    server = FakeJudge()
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(JudgePrompt.load(None).text.replace("You are grading", "Grade"), encoding="utf-8")
    try:
        verify = {"judge": judge_config(server.url), "max_failure_rate": 1.0}
        assert run_stage(tmp_path, trace_table(), **verify)[0] == 0
        assert run_stage(tmp_path, trace_table(), **verify, judge_prompt=str(prompt))[0] == 0
    finally:
        server.close()
    assert len(server.answered) == 6  # three answerable open rows, judged under each prompt
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())["answer_checks"]
    assert stats["judge"]["prompt_file"] == str(prompt)
    removed = pl.read_parquet(tmp_path / "out" / "removed.parquet").filter(pl.col("answer_kind") == "open")
    detail = json.loads(removed["detail"][0])
    assert detail["checked_by"] == "judge" and detail["judge_reply"].startswith("Incorrect")
    assert detail["reference"] == SUMMARY


def test_judge_prompt_needs_every_placeholder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("Grade {response} please.", encoding="utf-8")
    rc, _ = run_stage(
        tmp_path, trace_table(), judge=judge_config("http://127.0.0.1:9/v1"), judge_prompt=str(bad)
    )
    assert rc == 2 and "lacks the placeholders ['question', 'reference']" in capsys.readouterr().err


def test_parse_verdict_and_render() -> None:
    assert parse_verdict("Correct.") == "correct"
    assert parse_verdict("incorrect\nbecause ...") == "wrong"
    assert parse_verdict("This is not correct.") == "wrong"
    assert parse_verdict("CORRECT") == "correct"
    assert parse_verdict("I cannot tell.") is None and parse_verdict("") is None
    prompt = JudgePrompt.load(None)
    text = prompt.render("Q {reference}", "R", "A {question}")
    assert "Q {reference}" in text and "A {question}" in text and "\nR\n" in text  # filled in one pass
