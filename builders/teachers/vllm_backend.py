"""Offline vLLM backend: `vllm.LLM` and its chat API, batched."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

from builders.teachers.base import GenError, GenRequest, GenResult
from builders.teachers.config import TeacherConfig
from core.vllm_env import cpu_engine_kwargs

logger = logging.getLogger(__name__)


class VLLMBackend:
    """Generates with an in-process `vllm.LLM`; pass `llm` to reuse an engine already started."""

    def __init__(self, cfg: TeacherConfig, *, batch_size: int = 256, llm: Any = None) -> None:
        self.cfg = cfg
        self.batch_size = batch_size
        if llm is None:
            llm = make_llm(cfg)
        self.llm = llm
        self._stopped = False

    def generate(self, requests: Iterable[GenRequest]) -> Iterator[GenResult | GenError]:
        from vllm import SamplingParams

        s = self.cfg.sampling
        it = iter(requests)
        while not self._stopped and (batch := list(islice(it, self.batch_size))):
            params = [
                SamplingParams(temperature=s.temperature, top_p=s.top_p, max_tokens=r.max_tokens, seed=r.seed)
                for r in batch
            ]
            outs = self.llm.chat([r.messages for r in batch], params, use_tqdm=False)
            for req, out in zip(batch, outs, strict=True):
                comp = out.outputs[0]
                yield GenResult(
                    key=req.key,
                    id=req.id,
                    response=comp.text,
                    finish_reason=str(comp.finish_reason or "unknown"),
                    prompt_tokens=len(out.prompt_token_ids or []),
                    completion_tokens=len(comp.token_ids),
                    prompt_text=out.prompt,
                )

    def stop(self) -> None:
        """Start no further batch (the current one is already computed and is yielded)."""
        self._stopped = True

    def close(self) -> None:
        self.llm = None


def make_llm(cfg: TeacherConfig) -> Any:
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
