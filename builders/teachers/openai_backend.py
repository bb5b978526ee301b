"""OpenAI-compatible backend (above all `vllm serve`): many base URLs, bounded concurrency, retries.

Requests go to the least busy base URL; 429, 5xx, timeouts and connection errors are retried with
exponential backoff (on another URL when there is one). A failure of one request never stops the
run: other 4xx answers, retries used up, and a 200 whose body is not a chat completion (malformed
JSON, no `choices`, no message) each become that request's `GenError` (`request_error`, the cause in
`detail`). A failure of the whole run stops it with a `PipelineError` after the requests already on
the wire have come back: credentials refused (HTTP 401/403), or no base URL accepting connections
for `UNREACHABLE_REQUESTS` requests in a row. Once stopped (or when the consumer closes the
generator), nothing new is sent. The API key is read from the environment variable named in params
and is never logged; URLs are shown without user info.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from builders.teachers.base import GenError, GenRequest, GenResult
from builders.teachers.config import TeacherConfig
from builders.teachers.filters import PROMPT_TOO_LONG, REQUEST_ERROR
from core.errors import PipelineError

logger = logging.getLogger(__name__)

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
AUTH_STATUS = {401, 403}
CONTEXT_HINTS = ("context length", "maximum context", "too long", "max_model_len")
CONNECT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol)
UNREACHABLE_REQUESTS = 3  # requests in a row that found no URL accepting connections: stop the run


class _Stopped(Exception):
    """A worker's request was dropped because the run is stopping."""


def safe_url(url: str) -> str:
    """`url` without user info (credentials never reach a message or a log)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


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
                raise PipelineError(f"teacher {cfg.name}: environment variable {cfg.api_key_env} is not set")
            headers["Authorization"] = f"Bearer {key}"
        limits = httpx.Limits(max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency)
        self.client = httpx.Client(headers=headers, timeout=cfg.timeout_s, limits=limits)
        self._busy = [0] * len(self.urls)
        self._down: set[int] = set()  # URLs whose last attempt could not connect
        self._down_streak = 0  # requests in a row that used up their retries without connecting
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._fatal: PipelineError | None = None
        self._rng = random.Random(cfg.sampling.seed)
        self.requests_sent = 0

    def _pick(self, avoid: int | None) -> int:
        with self._lock:
            order = sorted(
                range(len(self.urls)), key=lambda i: (i == avoid, self._busy[i], i in self._down, i)
            )
            i = order[0]
            self._busy[i] += 1
            self.requests_sent += 1
            return i

    def _release(self, i: int, connected: bool) -> None:
        with self._lock:
            self._busy[i] -= 1
            if connected:
                self._down.discard(i)
                self._down_streak = 0
            else:
                self._down.add(i)

    def _abort(self, message: str) -> _Stopped:
        """Record a whole-run failure and stop every worker; the caller raises what it returns."""
        with self._lock:
            if self._fatal is None:
                self._fatal = PipelineError(message)
        self._stop.set()
        return _Stopped()

    def _unreachable(self, err: str) -> None:
        """A request found no server: stop the run when every URL is down for several in a row."""
        with self._lock:
            self._down_streak += 1
            dead = self._down_streak >= UNREACHABLE_REQUESTS and len(self._down) == len(self.urls)
        if dead:
            urls = ", ".join(safe_url(u) for u in self.urls)
            raise self._abort(
                f"teacher {self.cfg.name}: no server reachable at {urls} "
                f"({err} on every URL, {UNREACHABLE_REQUESTS} requests in a row)"
            )

    def _auth_refused(self, i: int, status: int) -> _Stopped:
        env = self.cfg.api_key_env
        hint = f"check the key in ${env}" if env else "no API key is configured (set api_key_env)"
        return self._abort(
            f"teacher {self.cfg.name}: {safe_url(self.urls[i])} refused the credentials "
            f"(HTTP {status}); {hint}"
        )

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
        err = ""
        never_connected = True
        for attempt in range(self.cfg.max_retries + 1):
            if self._stop.is_set():
                raise _Stopped()
            i = self._pick(last)
            connected = True
            try:
                resp = self.client.post(f"{self.urls[i]}/chat/completions", json=body)
            except httpx.HTTPError as exc:
                err = type(exc).__name__
                connected = not isinstance(exc, CONNECT_ERRORS)
            else:
                if resp.status_code == 200:
                    return _parse(req, resp)
                if resp.status_code in AUTH_STATUS:
                    raise self._auth_refused(i, resp.status_code)
                err = f"HTTP {resp.status_code}"
                if resp.status_code not in RETRY_STATUS:
                    text = resp.text[:500]
                    hit = any(h in text.lower() for h in CONTEXT_HINTS)
                    reason = PROMPT_TOO_LONG if hit else REQUEST_ERROR
                    return GenError(key=req.key, id=req.id, reason=reason, detail=f"{err}: {text}")
            finally:
                self._release(i, connected)
            never_connected = never_connected and not connected
            last = i
            if attempt < self.cfg.max_retries:
                delay = self.cfg.backoff_s * (2**attempt) * (0.5 + self._rng.random())
                url = safe_url(self.urls[i])
                logger.warning("%s from %s, retry %d in %.1fs", err, url, attempt + 1, delay)
                self._stop.wait(delay)
        if never_connected:
            self._unreachable(err)
        n = self.cfg.max_retries
        detail = f"{err} after {n} {'retry' if n == 1 else 'retries'}"
        logger.warning("teacher %s: prompt %s failed: %s", self.cfg.name, req.id, detail)
        return GenError(key=req.key, id=req.id, reason=REQUEST_ERROR, detail=detail)

    def _results(self, done: set[Future[GenResult | GenError]]) -> Iterator[GenResult | GenError]:
        """The outcomes of `done`; a worker's unexpected exception (a bug) is raised after them."""
        bugs = []
        for f in done:
            if f.cancelled():
                continue
            exc = f.exception()
            if exc is None:
                yield f.result()
            elif not isinstance(exc, _Stopped):
                bugs.append(f)
        for f in bugs:
            f.result()

    def generate(self, requests: Iterable[GenRequest]) -> Iterator[GenResult | GenError]:
        """Yield outcomes as they complete; closing the generator cancels what is not sent yet."""
        window = self.cfg.concurrency * 2
        pool = ThreadPoolExecutor(max_workers=self.cfg.concurrency, thread_name_prefix="openai-teacher")
        pending: set[Future[GenResult | GenError]] = set()
        finished = False
        try:
            it = iter(requests)
            while True:
                while len(pending) < window and not self._stop.is_set():
                    req = next(it, None)
                    if req is None:
                        break
                    pending.add(pool.submit(self._one, req))
                if not pending:
                    break
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from self._results(done)
                if self._fatal is not None:
                    for f in pending:
                        f.cancel()
                    rest, pending = wait(pending)  # answers already on the wire come back first
                    yield from (r for r in self._results(rest) if isinstance(r, GenResult))
                    raise self._fatal
            finished = True
        finally:
            if not finished:
                self._stop.set()  # a stop, an error, Ctrl-C or a closed generator: send nothing more
            for f in pending:
                f.cancel()
            pool.shutdown(wait=finished, cancel_futures=True)

    def stop(self) -> None:
        """Send nothing more: `generate` yields what is already on the wire, then ends."""
        self._stop.set()

    def close(self) -> None:
        self.client.close()


def _parse(req: GenRequest, resp: httpx.Response) -> GenResult | GenError:
    """A 200's chat completion, or this request's `GenError` when the body is not one."""

    def fail(detail: str) -> GenError:
        logger.warning("prompt %s: %s", req.id, detail)
        return GenError(key=req.key, id=req.id, reason=REQUEST_ERROR, detail=detail)

    try:
        data: Any = resp.json()
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        return fail(f"malformed JSON body: {exc} (body starts {resp.text[:80]!r})")
    if not isinstance(data, dict):
        return fail(f"response is not a JSON object but {type(data).__name__}")
    choices = data.get("choices")
    if not choices:
        extra = f" (error: {str(data['error'])[:200]})" if data.get("error") else ""
        return fail(f"response has no choices{extra}")
    if not isinstance(choices, list) or not isinstance(choices[0], dict):
        return fail("response 'choices' is not a list of objects")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        return fail("response choice has no message")
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        return fail(f"message content is {type(content).__name__}, not a string")
    usage = data.get("usage") or {}
    try:
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        completion_tokens = int(usage.get("completion_tokens") or 0)
    except (AttributeError, TypeError, ValueError):
        return fail(f"malformed usage {str(usage)[:100]}")
    return GenResult(
        key=req.key,
        id=req.id,
        response=content or "",
        finish_reason=str(choice.get("finish_reason") or "unknown"),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
    )
