"""Offline vLLM backend: continuous generation on an in-process `vllm.LLM` engine.

Up to `max_in_flight` requests stay in the engine at once, refilled as requests finish, and each
result is yielded as soon as its request finishes, so the engine never waits for the slowest
answer of a batch. Prompts are rendered exactly as `LLM.chat` renders them (the model's chat
template, no extra special tokens), so for the same per-request seed the outputs are those of
`LLM.chat`.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from builders.generation.base import BackendEntry, GenError, GenRequest, GenResult, TeacherBase
from core.vllm_env import cpu_engine_kwargs

logger = logging.getLogger(__name__)

ADD_CHUNK = 256  # requests rendered and added to the engine at a time


class VLLMTeacher(TeacherBase):
    """A teacher run in this process by an offline `vllm.LLM` engine."""

    backend: Literal["vllm"] = "vllm"
    tensor_parallel_size: int = Field(1, ge=1)
    dtype: str = "auto"
    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0)
    max_in_flight: int = Field(4096, ge=1, description="requests kept in the engine at once")


class VLLMBackend:
    """Generates with an in-process `vllm.LLM`; pass `llm` to reuse an engine already started.

    One `generate` at a time per engine: a second generator stepping the same engine would take
    the first one's outputs. The engine is kept full up to `cfg.max_in_flight` requests.
    """

    def __init__(self, cfg: VLLMTeacher, *, llm: Any = None) -> None:
        self.cfg = cfg
        self.max_in_flight = cfg.max_in_flight
        self._owned = llm is None  # an engine this backend started is shut down by `close`
        if llm is None:
            llm = make_llm(cfg)
        self.llm = llm
        self._stopped = False
        self._active: Generator[GenResult | GenError, None, None] | None = None
        self._added = 0

    def generate(self, requests: Iterable[GenRequest]) -> Iterator[GenResult | GenError]:
        """Yield one result per request, in finishing order; closing the generator aborts the rest."""
        self._active = self._run(iter(requests))
        return self._active

    def _run(self, requests: Iterator[GenRequest]) -> Generator[GenResult | GenError, None, None]:
        engine = self.llm.llm_engine
        pending: dict[str, tuple[str, GenRequest]] = {}  # external request id -> (internal id, request)
        exhausted = False
        try:
            while True:
                if not (exhausted or self._stopped):
                    exhausted = self._fill(requests, pending)
                if not pending:
                    return
                if not engine.has_unfinished_requests():
                    raise RuntimeError(f"vLLM engine dropped {len(pending)} requests of this run")
                done = [
                    (out, pending.pop(out.request_id)[1])
                    for out in engine.step()
                    if out.finished and out.request_id in pending
                ]
                for out, req in done:
                    yield _result(req, out)
        finally:
            if pending:
                logger.info("aborting %d unfinished vLLM requests", len(pending))
                engine.abort_request([internal for internal, _ in pending.values()], internal=True)

    def _fill(self, requests: Iterator[GenRequest], pending: dict[str, tuple[str, GenRequest]]) -> bool:
        """Add requests until `max_in_flight` are pending; True when `requests` ran out.

        In chunks, so that an engine core in its own process (vLLM's default on a GPU) starts on
        the first chunk while the next ones are rendered.
        """
        while (n := min(self.max_in_flight - len(pending), ADD_CHUNK)) > 0:
            batch = list(islice(requests, n))
            self._add(batch, pending)
            if len(batch) < n:
                return True
        return False

    def _add(self, batch: list[GenRequest], pending: dict[str, tuple[str, GenRequest]]) -> None:
        """Render `batch` as `LLM.chat` does and add it to the engine with per-request sampling."""
        if not batch:
            return
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        llm, s = self.llm, self.cfg.sampling
        # LLM.chat -> _add_chat_requests -> _preprocess_chat(_one): the model's chat template,
        # tokenized without added special tokens; token ids as LLM.generate takes them
        # (_preprocess_cmpl) (vllm 0.32 entrypoints/common/offline.py).
        chats = [r.messages for r in batch if r.prompt_token_ids is None]
        ids = [{"prompt_token_ids": r.prompt_token_ids} for r in batch if r.prompt_token_ids is not None]
        rendered = iter(llm._preprocess_chat(chats) if chats else [])
        tokenized = iter(llm._preprocess_cmpl(ids) if ids else [])
        prompts = [next(rendered if r.prompt_token_ids is None else tokenized) for r in batch]
        for req, prompt in zip(batch, prompts, strict=True):
            params = SamplingParams(temperature=s.temperature, top_p=s.top_p, max_tokens=req.max_tokens,
                                    seed=req.seed, output_kind=RequestOutputKind.FINAL_ONLY)  # fmt: skip
            request_id = str(next(llm.request_counter))
            pending[request_id] = (llm.llm_engine.add_request(request_id, prompt, params), req)
        self._added += len(batch)

    def figures(self) -> dict[str, Any]:
        """Requests added to the engine (since it was made)."""
        return {"requests_sent": self._added}

    def stop(self) -> None:
        """Add no further request; those already in the engine still finish and are yielded."""
        self._stopped = True

    def close(self) -> None:
        """Abort what the running `generate` still has in the engine, then drop the engine."""
        if self._active is not None:
            self._active.close()
            self._active = None
        if self._owned and self.llm is not None:
            self.llm.llm_engine.engine_core.shutdown()
        self.llm = None


def _result(req: GenRequest, out: Any) -> GenResult:
    comp = out.outputs[0]
    return GenResult(
        key=req.key,
        id=req.id,
        response=comp.text,
        finish_reason=str(comp.finish_reason or "unknown"),
        prompt_tokens=len(out.prompt_token_ids or []),
        completion_tokens=len(comp.token_ids),
        prompt_text=out.prompt,
    )


def make_llm(cfg: VLLMTeacher) -> Any:
    """Start a `vllm.LLM` for `cfg` (engine start takes a while)."""
    extra = cpu_engine_kwargs(cfg.max_model_len)
    from vllm import LLM

    logger.info("starting vLLM for %s (%s)", cfg.name, cfg.model)
    return LLM(
        **extra,
        model=cfg.model,
        revision=cfg.revision,
        tokenizer_revision=cfg.revision,
        max_model_len=cfg.max_model_len,
        tensor_parallel_size=cfg.tensor_parallel_size,
        dtype=cfg.dtype,
        gpu_memory_utilization=cfg.gpu_memory_utilization,
        seed=cfg.sampling.seed,
    )


def create(cfg: VLLMTeacher, workdir: Path) -> VLLMBackend:
    """The registry's constructor (starts the engine)."""
    return VLLMBackend(cfg)


ENTRY = BackendEntry("vllm", VLLMTeacher, create)
