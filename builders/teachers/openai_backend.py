"""OpenAI-compatible backend (above all `vllm serve`): a fleet of base URLs, `concurrency` each, retries.

Requests run on an asyncio event loop in a background thread (aiohttp, keep-alive connections).
Each base URL has `concurrency` slots; a request takes a free slot of the least busy URL, and a
finished one frees it for the next at once. A URL refusing connections gets no request for `DOWN_S`
seconds, then one probe. 429, 5xx, timeouts and connection errors are retried with exponential
backoff on another URL while one is up (waiting for its slot). A failure of one request never stops
the run: other 4xx answers, retries used up, and a 200 whose body is not a chat completion
(malformed JSON, no `choices`, no message) each become that request's `GenError` (`request_error`,
the cause in `detail`). A failure of the whole run stops it with a `PipelineError` after the
requests already on the wire have come back: credentials refused (HTTP 401/403), or no base URL
accepting connections for `UNREACHABLE_REQUESTS` requests in a row. Once stopped (or when the
consumer closes the generator), nothing new is sent; at most twice the fleet's slots are sent ahead
of what the consumer has taken. The API key is read from the environment variable named in params
and is never logged; URLs are shown without user info. HTTP(S)_PROXY / ALL_PROXY / NO_PROXY apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import random
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from builders.teachers.base import GenError, GenRequest, GenResult
from builders.teachers.config import TeacherConfig
from builders.teachers.filters import PROMPT_TOO_LONG, REQUEST_ERROR
from core.errors import PipelineError

logger = logging.getLogger(__name__)

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
AUTH_STATUS = {401, 403}
CONTEXT_HINTS = ("context length", "maximum context", "too long", "max_model_len")
TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError)
NEVER_CONNECTED = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError, aiohttp.InvalidURL,
                   aiohttp.NonHttpUrlClientError)  # fmt: skip
UNREACHABLE_REQUESTS = 3  # requests in a row that found no URL accepting connections: stop the run
DOWN_S = 2.0  # a URL that refused a connection gets no request for this long, then one probe
_DONE = object()  # the end of one `generate` run's results


class _Stopped(Exception):
    """A request was dropped because the run is stopping."""


def safe_url(url: str) -> str:
    """`url` without user info (credentials never reach a message or a log)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for `url` (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY)."""
    parts = urlsplit(url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(parts.scheme) or proxies.get("all")


def error_name(exc: BaseException) -> str:
    """A transport failure's short name (`detail` of a request that used up its retries)."""
    names = ((aiohttp.ConnectionTimeoutError, "ConnectTimeout"), (TimeoutError, "ReadTimeout"),
             (aiohttp.ClientConnectorError, "ConnectError"))  # fmt: skip
    return next((name for kind, name in names if isinstance(exc, kind)), type(exc).__name__)


class OpenAIBackend:
    """Chat completions against one or several OpenAI-compatible servers."""

    def __init__(self, cfg: TeacherConfig) -> None:
        self.cfg = cfg
        self.urls = [u.rstrip("/") for u in cfg.base_urls]
        self.model = cfg.served_model_name or cfg.model
        self.headers = {}
        if cfg.api_key_env:
            key = os.environ.get(cfg.api_key_env)
            if not key:
                raise PipelineError(f"teacher {cfg.name}: environment variable {cfg.api_key_env} is not set")
            if any("@" in urlsplit(u).netloc for u in self.urls):
                raise PipelineError(f"teacher {cfg.name}: credentials in a base URL and api_key_env; use one")
            self.headers["Authorization"] = f"Bearer {key}"
        self.proxies = [env_proxy(u) for u in self.urls]
        self.slots = cfg.concurrency  # per URL
        self.window = 2 * cfg.concurrency * len(self.urls)  # sent and not yet taken by the consumer
        self._rng = random.Random(cfg.sampling.seed)
        self._stopping = False
        self._fatal: PipelineError | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.requests_sent = 0
        self._reset()

    def _reset(self) -> None:
        """State of one `generate` run (touched only on its event loop, except the consumer's count)."""
        self._busy = [0] * len(self.urls)
        self._down: dict[int, float] = {}  # URLs whose last attempt could not connect -> next probe
        self._down_streak = 0  # requests in a row that used up their retries without connecting
        self._waiters: deque[tuple[int | None, asyncio.Future[int | None]]] = deque()
        self._tasks: set[asyncio.Task[GenResult | GenError]] = set()
        self._credit: asyncio.Future[None] | None = None  # the feeder waits on it for the consumer
        self._halted: asyncio.Event | None = None
        self._out: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._taken = self._consumed = 0

    def _choose(self, avoid: int | None) -> int | None:
        """The free URL a request leaving `avoid` takes now, or None: wait for a slot."""
        now, n = time.monotonic(), len(self.urls)
        up = [self._down.get(i, 0.0) <= now for i in range(n)]
        up = up if any(up) else [True] * n  # every URL is down: try them anyway
        others_up = any(u for i, u in enumerate(up) if i != avoid)
        free = [i for i in range(n) if up[i] and self._busy[i] < self.slots and (i != avoid or not others_up)]
        return min(free, key=self._busy.__getitem__, default=None)  # the least busy

    def _take(self, i: int) -> int:
        self._busy[i] += 1
        self.requests_sent += 1
        if i in self._down:
            self._down[i] = time.monotonic() + DOWN_S  # one probe per DOWN_S
        return i

    async def _acquire(self, avoid: int | None) -> int:
        """A slot (its URL's index); raises `_Stopped` once the run is stopping."""
        while not self._stopping:
            i = self._choose(avoid)
            if i is not None:
                return self._take(i)
            fut: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
            self._waiters.append((avoid, fut))
            i = await fut  # a slot handed over by `_dispatch`, or None: look again
            if i is not None:
                return i
        raise _Stopped()

    def _release(self, i: int, connected: bool | None) -> None:
        """Free a slot; `connected` is whether the attempt reached the server (None: not made)."""
        self._busy[i] -= 1
        if connected:
            self._down.pop(i, None)
            self._down_streak = 0
        elif connected is False:
            if i not in self._down:
                asyncio.get_running_loop().call_later(DOWN_S, self._dispatch)  # its probe is due then
            self._down[i] = time.monotonic() + DOWN_S
        self._dispatch()

    def _dispatch(self) -> None:
        """Hand free slots to waiting requests, first come first served."""
        if self._stopping:
            return
        full: set[int | None] = set()  # `avoid` values that found no slot in this pass
        for _ in range(len(self._waiters)):
            avoid, fut = self._waiters.popleft()
            if fut.done():
                continue
            i = None if avoid in full else self._choose(avoid)
            if i is None:
                full.add(avoid)
                self._waiters.append((avoid, fut))
            else:
                fut.set_result(self._take(i))

    def _halt(self) -> None:
        """Stop: wake every waiting request, the feeder and the backoff sleeps (on the loop)."""
        self._stopping = True
        if self._halted is not None:
            self._halted.set()
        for _, fut in self._waiters:
            if not fut.done():
                fut.set_result(None)
        self._waiters.clear()
        self._grant()

    def _grant(self) -> None:
        if self._credit is not None and not self._credit.done():
            self._credit.set_result(None)

    def _abort(self, message: str) -> _Stopped:
        """Record a whole-run failure and stop every request; the caller raises what it returns."""
        if self._fatal is None:
            self._fatal = PipelineError(message)
        self._halt()
        return _Stopped()

    def _unreachable(self, err: str) -> None:
        """A request found no server: stop the run when every URL is down for several in a row."""
        self._down_streak += 1
        if self._down_streak >= UNREACHABLE_REQUESTS and len(self._down) == len(self.urls):
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

    async def _one(self, session: aiohttp.ClientSession, req: GenRequest, i: int) -> GenResult | GenError:
        """Send `req` on slot `i` (retries take slots of their own): its result or its `GenError`."""
        s = self.cfg.sampling
        body = {"model": self.model, "messages": req.messages, "max_tokens": req.max_tokens,
                "temperature": s.temperature, "top_p": s.top_p, "seed": req.seed}  # fmt: skip
        err = ""
        never_connected = True
        for attempt in range(self.cfg.max_retries + 1):
            if attempt:
                i = await self._acquire(i)
            connected = None
            try:
                if self._stopping:
                    raise _Stopped()
                connected = True
                url = self.urls[i]
                try:
                    async with session.post(f"{url}/chat/completions", json=body, proxy=self.proxies[i]) as r:
                        status, data = r.status, await r.read()
                except TRANSPORT_ERRORS as exc:
                    err, connected = error_name(exc), not isinstance(exc, NEVER_CONNECTED)
                else:
                    if status == 200:
                        return _parse(req, data)
                    if status in AUTH_STATUS:
                        raise self._auth_refused(i, status)
                    err = f"HTTP {status}"
                    if status not in RETRY_STATUS:
                        text = data.decode("utf-8", "replace")[:500]
                        hit = any(h in text.lower() for h in CONTEXT_HINTS)
                        reason = PROMPT_TOO_LONG if hit else REQUEST_ERROR
                        return GenError(key=req.key, id=req.id, reason=reason, detail=f"{err}: {text}")
            finally:
                self._release(i, connected)
            never_connected = never_connected and not connected
            if attempt < self.cfg.max_retries:
                delay = self.cfg.backoff_s * (2**attempt) * (0.5 + self._rng.random())
                logger.warning("%s from %s, retry %d in %.1fs", err, safe_url(url), attempt + 1, delay)
                if delay > 0 and self._halted is not None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._halted.wait(), delay)
        if never_connected:
            self._unreachable(err)
        n = self.cfg.max_retries
        detail = f"{err} after {n} {'retry' if n == 1 else 'retries'}"
        logger.warning("teacher %s: prompt %s failed: %s", self.cfg.name, req.id, detail)
        return GenError(key=req.key, id=req.id, reason=REQUEST_ERROR, detail=detail)

    def _deliver(self, task: asyncio.Task[GenResult | GenError]) -> None:
        """A finished request's outcome to the consumer (a bug's exception too; a drop is silent)."""
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            self._out.put(task.result())
        elif not isinstance(exc, _Stopped):
            self._out.put(exc)

    async def _room(self) -> None:
        """Wait until the consumer is less than `window` results behind; raises `_Stopped` on a stop."""
        while self._taken - self._consumed >= self.window and not self._stopping:
            self._credit = asyncio.get_running_loop().create_future()
            if self._taken - self._consumed < self.window:  # the consumer took one meanwhile
                break
            await self._credit
        self._credit = None
        if self._stopping:
            raise _Stopped()

    async def _feed(self, session: aiohttp.ClientSession, requests: Iterator[GenRequest]) -> None:
        """Start a request whenever a slot is free, until the requests run out or the run stops."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self._room()
                i = await self._acquire(None)
                req = next(requests, None)
                if req is None:
                    self._release(i, None)
                    return
                self._taken += 1
                task = loop.create_task(self._one(session, req, i))
                self._tasks.add(task)
                task.add_done_callback(self._deliver)
        except _Stopped:
            pass

    async def _drive(self, requests: Iterator[GenRequest]) -> None:
        """The run: feed, then wait for every request; the end (or a bug) goes to the consumer."""
        self._halted = asyncio.Event()
        t = self.cfg.timeout_s
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=t, sock_read=t)
        connector = aiohttp.TCPConnector(limit=self.slots * len(self.urls))
        try:
            async with aiohttp.ClientSession(headers=self.headers, timeout=timeout, connector=connector) as s:
                try:
                    await self._feed(s, requests)
                except BaseException:
                    self._cancel()
                    raise
                finally:
                    while self._tasks:
                        await asyncio.wait(set(self._tasks))
        except BaseException as exc:
            self._out.put(exc)
        finally:
            self._out.put(_DONE)

    def _cancel(self) -> None:
        """Stop and drop what is on the wire (the consumer is gone)."""
        self._halt()
        for task in self._tasks:
            task.cancel()

    def generate(self, requests: Iterable[GenRequest]) -> Iterator[GenResult | GenError]:
        """Yield outcomes as they complete; closing the generator cancels what is not sent yet."""
        self._reset()
        out = self._out
        loop = self._loop = asyncio.new_event_loop()
        run = self._drive(iter(requests))
        thread = threading.Thread(target=loop.run_until_complete, args=(run,), name="openai", daemon=True)
        thread.start()
        finished = False
        try:
            while (item := out.get()) is not _DONE:
                self._consumed += 1
                if self._credit is not None and not self._credit.done():
                    loop.call_soon_threadsafe(self._grant)
                if isinstance(item, BaseException):
                    raise item
                if self._fatal is None or isinstance(item, GenResult):  # after a stop: answers only
                    yield item
            if self._fatal is not None:
                raise self._fatal
            finished = True
        finally:
            if not finished:  # a stop, an error, Ctrl-C or a closed generator: send nothing more
                self._stopping = True
                loop.call_soon_threadsafe(self._cancel)
            thread.join()
            self._loop = None
            loop.close()

    def stop(self) -> None:
        """Send nothing more: `generate` yields what is already on the wire, then ends."""
        self._stopping = True
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the run has just ended
                loop.call_soon_threadsafe(self._halt)

    def close(self) -> None:
        """Stop a run still going (its generator's end joins it)."""
        self.stop()


def _parse(req: GenRequest, body: bytes) -> GenResult | GenError:
    """A 200's chat completion, or this request's `GenError` when the body is not one."""

    def fail(detail: str) -> GenError:
        logger.warning("prompt %s: %s", req.id, detail)
        return GenError(key=req.key, id=req.id, reason=REQUEST_ERROR, detail=detail)

    try:
        data: Any = json.loads(body)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        return fail(f"malformed JSON body: {exc} (body starts {body[:80].decode('utf-8', 'replace')!r})")
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
