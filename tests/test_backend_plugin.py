"""A backend is one module plus one registry entry: the `reverse` backend below (its config, its
backend class and its `BackendEntry`) is registered and a teacher using it runs through the
`traces` stage's entry, with nothing else changed."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import polars as pl
import pytest
import yaml

import builders.traces.__main__ as traces_stage
from builders.generation.base import BackendEntry, GenError, GenRequest, GenResult, TeacherBase
from builders.generation.registry import BACKENDS, parse_teacher
from tests.test_traces_common import prompt_table

# --- the plugin module: config, backend, entry --------------------------------------------------


class ReverseTeacher(TeacherBase):
    """A teacher that answers every question reversed, followed by `suffix`."""

    backend: Literal["reverse"] = "reverse"
    suffix: str = "!"


class ReverseBackend:
    """Answers in this process, one result per request."""

    def __init__(self, cfg: ReverseTeacher) -> None:
        self.cfg, self.sent, self.stopped = cfg, 0, False

    def generate(self, requests: Iterable[GenRequest]) -> Iterator[GenResult | GenError]:
        for req in requests:
            if self.stopped:
                return
            self.sent += 1
            answer = req.messages[-1]["content"][::-1] + self.cfg.suffix
            yield GenResult(req.key, req.id, answer, "stop", len(req.messages), len(answer.split()))

    def stop(self) -> None:
        self.stopped = True

    def close(self) -> None:
        pass

    def figures(self) -> dict[str, Any]:
        return {"requests_sent": self.sent}


ENTRY = BackendEntry("reverse", ReverseTeacher, lambda cfg, workdir: ReverseBackend(cfg))

# --- the test ---------------------------------------------------------------------------------


def write_params(path: Path, teacher: dict[str, Any]) -> Path:
    terms = {"license": "MIT", "outputs_may_train_models": True, "commercial_use": True}
    params = {
        "base": {"seed": 7},
        "traces": {"teachers": [teacher], "min_new_tokens": 4, "min_response_chars": 1},
        "license": {"teachers": {teacher["name"]: terms}},
    }
    path.write_text(yaml.safe_dump(params), encoding="utf-8")
    return path


def test_a_registered_backend_runs_through_the_traces_stage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(BACKENDS, ENTRY.name, ENTRY)  # the one registry entry
    prompts = prompt_table(6)
    prompts.write_parquet(tmp_path / "prompts.parquet")
    teacher = {"name": "rev", "backend": "reverse", "model": "reverse-model", "revision": "0" * 40,
               "suffix": "?", "sampling": {"max_tokens": 32}}  # fmt: skip
    params = write_params(tmp_path / "params.yaml", teacher)
    argv = ["--params", str(params), "--prompts", str(tmp_path / "prompts.parquet"),
            "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache")]  # fmt: skip

    assert traces_stage.main(argv) == 0
    traces = pl.read_parquet(tmp_path / "out" / "traces.parquet")
    assert traces["id"].to_list() == prompts["id"].to_list()
    assert traces["response"].to_list() == [q[::-1] + "?" for q in prompts["question"]]
    assert set(traces["teacher"]) == {"rev"} and set(traces["teacher_model"]) == {"reverse-model"}
    meta = yaml.safe_load((tmp_path / "out" / "meta" / "rev.json").read_text())
    assert meta["backend"] == "reverse" and meta["revision"] == "0" * 40
    assert yaml.safe_load((tmp_path / "out" / "run.json").read_text())["teachers"]["rev"]["sent"] == 6

    assert traces_stage.main(argv) == 0  # its answers are cached like any backend's
    assert yaml.safe_load((tmp_path / "out" / "run.json").read_text())["teachers"]["rev"]["sent"] == 0


def test_an_unregistered_backend_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="backend must be one of vllm, openai, openai_batch"):
        parse_teacher({"name": "rev", "backend": "reverse", "model": "reverse-model"})
    assert type(parse_teacher({"name": "a", "model": "m"})).__name__ == "VLLMTeacher"
