"""OpenAI-compatible backend (above all `vllm serve`): many base URLs, bounded concurrency, retries.

Requests go to the least busy base URL; 429, 5xx, timeouts and connection errors are retried with
exponential backoff (on another URL when there is one). Other 4xx answers are final (`GenError`).
The API key is read from the environment variable named in params and is never logged.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

import httpx

from builders.teachers.base import GenError, GenRequest, GenResult
from builders.teachers.config import TeacherConfig

logger = logging.getLogger(__name__)

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
CONTEXT_HINTS = ("context length", "maximum context", "too long", "max_model_len")


class OpenAIBackend:
    """Chat completions against one or several OpenAI-compatible servers."""

    def __init__(self, cfg: TeacherConfig) -> None:
        self.cfg = cfg
        self.urls = [u.rstrip("/") for u in cfg.base_urls]
        self.model = cfg.served_model_name or cfg.model
        headers = {}
        if cfg.api_key_env:
            key = os.environ.get(cfg.api_key_env)
            if not key:
                raise ValueError(f"teacher {cfg.name}: environment variable {cfg.api_key_env} is not set")
            headers["Authorization"] = f"Bearer {key}"
        limits = httpx.Limits(max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency)
        self.client = httpx.Client(headers=headers, timeout=cfg.timeout_s, limits=limits)
        self._busy = [0] * len(self.urls)
        self._lock = threading.Lock()
        self._rng = random.Random(cfg.sampling.seed)
        self.requests_sent = 0

    def _pick(self, avoid: int | None) -> int:
        with self._lock:
            order = sorted(range(len(self.urls)), key=lambda i: (i == avoid, self._busy[i], i))
            i = order[0]
            self._busy[i] += 1
            self.requests_sent += 1
            return i

    def _release(self, i: int) -> None:
        with self._lock:
            self._busy[i] -= 1

    def _one(self, req: GenRequest) -> GenResult | GenError:
        s = self.cfg.sampling
        body = {
            "model": self.model,
            "messages": req.messages,
            "max_tokens": req.max_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "seed": req.seed,
        }
        last = None
        for attempt in range(self.cfg.max_retries + 1):
            i = self._pick(last)
            try:
                resp = self.client.post(f"{self.urls[i]}/chat/completions", json=body)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                err = f"{type(exc).__name__}"
            else:
                if resp.status_code == 200:
                    return _parse(req, resp.json())
                err = f"HTTP {resp.status_code}"
                if resp.status_code not in RETRY_STATUS:
                    text = resp.text[:500]
                    reason = (
                        "prompt_too_long"
                        if any(h in text.lower() for h in CONTEXT_HINTS)
                        else "request_error"
                    )
                    return GenError(key=req.key, id=req.id, reason=reason, detail=f"{err}: {text}")
            finally:
                self._release(i)
            last = i
            if attempt < self.cfg.max_retries:
                delay = self.cfg.backoff_s * (2**attempt) * (0.5 + self._rng.random())
                logger.warning("%s from %s, retry %d in %.1fs", err, self.urls[i], attempt + 1, delay)
                time.sleep(delay)
        raise RuntimeError(
            f"teacher {self.cfg.name}: request for prompt {req.id} failed after retries ({err})"
        )

    def generate(self, requests: Iterable[GenRequest]) -> Iterator[GenResult | GenError]:
        window = self.cfg.concurrency * 2
        with ThreadPoolExecutor(max_workers=self.cfg.concurrency) as pool:
            pending: set[Future[GenResult | GenError]] = set()
            try:
                for req in requests:
                    pending.add(pool.submit(self._one, req))
                    if len(pending) >= window:
                        done, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for f in done:
                            yield f.result()
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in done:
                        yield f.result()
            finally:
                for f in pending:
                    f.cancel()

    def close(self) -> None:
        self.client.close()


def _parse(req: GenRequest, data: dict[str, Any]) -> GenResult:
    choice = data["choices"][0]
    usage = data.get("usage") or {}
    return GenResult(
        key=req.key,
        id=req.id,
        response=(choice.get("message") or {}).get("content") or "",
        finish_reason=str(choice.get("finish_reason") or "unknown"),
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
    )
