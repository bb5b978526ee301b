"""The judge on the offline vLLM backend: a tiny local model judges open answers (its verdicts are
noise, the plumbing is real): context check, cached replies, a rerun that starts no engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builders.verify.config import VerifyConfig
from builders.verify.run import run_verify
from tests.test_traces_common import build_teacher
from tests.test_verify import CASES, trace_table

pytestmark = pytest.mark.slow


def test_a_tiny_vllm_judge(tmp_path: Path) -> None:
    model = build_teacher(tmp_path / "judge")
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(
        "Q: {question}\nRef: {reference}\nA: {response}\nCorrect or incorrect?\n", encoding="utf-8"
    )
    long_answer = "the quick brown fox jumps over a lazy dog " * 40
    cases = [
        *CASES,
        ("niv2", "Summarize the story: the fox and the dog.", CASES[3][2], False, {"ta": long_answer}),
    ]
    traces = trace_table(cases)
    traces.write_parquet(tmp_path / "traces.parquet")
    sampling = {"temperature": 0.0, "top_p": 1.0, "max_tokens": 4, "seed": 0}
    judge = {"name": "judge", "backend": "vllm", "model": str(model), "max_model_len": 256,
             "dtype": "float32", "sampling": sampling}  # fmt: skip
    cfg = VerifyConfig.model_validate({"drop_wrong": False, "judge": judge, "judge_prompt": str(prompt)})
    stats = run_verify(tmp_path / "traces.parquet", cfg, tmp_path / "out", tmp_path / "cache")
    judged = stats["answer_checks"]["judged"]
    too_long = judged["prompt_too_long"]  # the long answer, and rows the tiny tokenizer splits finely
    assert judged["rows"] == 5 and 1 <= too_long < 5 and judged["request_error"] == 0
    assert judged["correct"] + judged["wrong"] + judged["unparseable"] == 5 - too_long
    assert stats["answer_checks"]["judge"]["revision"].startswith("sha256:")  # a local folder's digest
    first = json.loads((tmp_path / "out" / "run.json").read_text())["judge"]
    assert first["sent"] == 5 - too_long and first["completion_tokens"] > 0

    def no_engine(_cfg: object) -> None:
        raise AssertionError("a rerun with every verdict cached must not start the judge")

    again = run_verify(tmp_path / "traces.parquet", cfg, tmp_path / "out2", tmp_path / "cache", no_engine)
    assert again == stats
    rerun = json.loads((tmp_path / "out2" / "run.json").read_text())["judge"]
    assert rerun["sent"] == 0 and rerun["cached_before_run"] == 5 - too_long
    assert (tmp_path / "out" / "traces.parquet").read_bytes() == (
        tmp_path / "out2" / "traces.parquet"
    ).read_bytes()
