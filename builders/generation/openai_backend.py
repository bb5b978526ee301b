"""OpenAI-compatible backend (`vllm serve`, or a paid API): a fleet of base URLs, paced by the rate
limits each server announces, with retries.

Requests run on an asyncio event loop in a background thread (aiohttp, keep-alive connections). Each
base URL holds at most `concurrency` requests, fewer while it answers 429, and a request waits until
the rate-limit windows the URL's `x-ratelimit-*` headers announce have room for it
(`builders.generation.ratelimit`); the teacher's own `rpm` and `tpm` cap the whole fleet. A request
goes to the least busy URL that may take it now and a finished one frees its slot for the next at
once; a URL refusing connections gets a probe every few seconds (`builders.generation.fleet`).

A 429 is back-pressure, not a failure: the URL pauses for its `retry-after-ms` / `Retry-After` (else
until its window resets, else an exponential backoff) and the request goes again, on another URL if
one may take it, as often as it takes while the server keeps answering; it never counts against
`max_retries`. A 429 whose error is `insufficient_quota` (the account cannot pay) stops the run.
Every attempt has a deadline, `timeout_s`, for the whole of it: connecting, the first byte and the
last byte of the body (a body trickled a byte at a time cannot escape it). 5xx, 408/409/425,
timeouts, connection errors and empty answers (a 200 whose content is missing or blank, unless the
token limit cut it) are retried with exponential backoff on another URL while one is up, at most
`max_retries` times; an answer still empty then is the teacher's answer (its `empty_response` is
final). A failure of one request never stops the run: other 4xx answers, retries used up, and a 200
whose body is not a chat completion (malformed JSON, no `choices`, no message) each become that
request's `GenError` (`request_error`, the cause in `detail`). A failure of the whole run stops it
with a `PipelineError` after the requests already on the wire have come back: credentials refused
(HTTP 401/403), quota exhausted, an answer naming another model than the configured one
(`ApiTeacher.serves`; never cached), or no base URL accepting connections for `UNREACHABLE_REQUESTS`
requests in a row. Once stopped (or when the consumer closes the generator), nothing new is sent; at
most twice the fleet's slots are sent ahead of what the consumer has taken. The API key is read from
the environment variable named in params and is never logged; URLs are shown without user info.
HTTP(S)_PROXY / ALL_PROXY / NO_PROXY apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import random
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp

from builders.generation.api import api_key, env_proxy, safe_url
from builders.generation.base import (
    PROMPT_TOO_LONG,
    REQUEST_ERROR,
    BackendEntry,
    GenError,
    GenRequest,
    GenResult,
)
from builders.generation.budget import Budget, BudgetGate, budget_of
from builders.generation.completions import CONTEXT_HINTS, is_empty, parse_body
from builders.generation.fleet import Fleet, Stopped
from builders.generation.openai_teacher import (
    AUTH_STATUS,
    MAX_THROTTLE_S,
    NEVER_CONNECTED,
    QUOTA_CODES,
    RETRY_STATUS,
    THROTTLED,
    TRANSPORT_ERRORS,
    UNREACHABLE_REQUESTS,
    OpenAITeacher,
    error_name,
    request_cost,
)
from builders.generation.ratelimit import Ticket, retry_after_s
from core.errors import PipelineError

logger = logging.getLogger(__name__)

_DONE = object()  # the end of one `generate` run's results


class OpenAIBackend:
    """Chat completions against one or several OpenAI-compatible servers."""

    def __init__(self, cfg: OpenAITeacher) -> None:
        self.cfg = cfg
        self.urls = [u.rstrip("/") for u in cfg.base_urls]
        self.model = cfg.api_model
        key = api_key(cfg, self.urls)
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.proxies = [env_proxy(u) for u in self.urls]
        self.window = 2 * cfg.concurrency * len(self.urls)  # sent and not yet taken by the consumer
        self._rng = random.Random(cfg.sampling.seed)
        self._stopping = False
        self._fatal: PipelineError | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reset()

    def _reset(self) -> None:
        """State of one `generate` run (touched only on its event loop, except the consumer's count)."""
        self._fleet = Fleet(len(self.urls), self.cfg.concurrency, self.cfg.rpm, self.cfg.tpm)
        self._down_streak = 0  # requests in a row that used up their retries without connecting
        self._tasks: set[asyncio.Task[GenResult | GenError]] = set()
        self._credit: asyncio.Future[None] | None = None  # the feeder waits on it for the consumer
        self._halted: asyncio.Event | None = None
        self._out: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._taken = self._consumed = 0
        self._throttles = {"http_429": 0, "retry_after_s": 0.0}
        self._budget: Budget | None = None  # the budget gating the requests, when there is one
        self._empty = 0  # empty answers asked again
        self._unnamed = False  # a server answered without naming its model (warned once)

    def figures(self) -> dict[str, Any]:
        """HTTP requests sent (retries included), 429s, seconds of Retry-After honoured, seconds
        requests waited for a slot or a rate window (summed over requests), and empty answers asked
        again, in the last run."""
        f = {"requests_sent": self._fleet.sent, **self._throttles, "wait_s": self._fleet.wait_s,
             "empty_retries": self._empty}  # fmt: skip
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in f.items()}

    def _release(self, i: int, connected: bool | None) -> None:
        """Free a slot; `connected` is whether the attempt reached the server (None: not made)."""
        if connected:
            self._down_streak = 0
        self._fleet.release(i, connected)

    def _halt(self) -> None:
        """Stop: wake every waiting request, the feeder and the backoff sleeps (on the loop)."""
        self._stopping = True
        if self._halted is not None:
            self._halted.set()
        self._fleet.halt()
        self._grant()

    def _grant(self) -> None:
        if self._credit is not None and not self._credit.done():
            self._credit.set_result(None)

    def _abort(self, message: str) -> Stopped:
        """Record a whole-run failure and stop every request; the caller raises what it returns."""
        if self._fatal is None:
            self._fatal = PipelineError(message)
        self._halt()
        return Stopped()

    def _unreachable(self, err: str) -> None:
        """A request found no server: stop the run when every URL is down for several in a row."""
        self._down_streak += 1
        if self._down_streak >= UNREACHABLE_REQUESTS and self._fleet.all_down():
            urls = ", ".join(safe_url(u) for u in self.urls)
            raise self._abort(
                f"teacher {self.cfg.name}: no server reachable at {urls} "
                f"({err} on every URL, {UNREACHABLE_REQUESTS} requests in a row)"
            )

    def _auth_refused(self, i: int, status: int) -> Stopped:
        env = self.cfg.api_key_env
        hint = f"check the key in ${env}" if env else "no API key is configured (set api_key_env)"
        return self._abort(
            f"teacher {self.cfg.name}: {safe_url(self.urls[i])} refused the credentials "
            f"(HTTP {status}); {hint}"
        )

    def _throttled(
        self, i: int, ticket: Ticket, headers: Mapping[str, str], data: bytes, streak: int
    ) -> None:
        """A 429: stop the run when the quota is gone, else pause the URL (Retry-After, else until
        its window resets, else a backoff) and halve its cap."""
        text = data.decode("utf-8", "replace")[:500]
        if any(code in text for code in QUOTA_CODES):
            raise self._abort(
                f"teacher {self.cfg.name}: {safe_url(self.urls[i])} answered HTTP 429 insufficient_quota "
                "(the account's quota or credit is used up); finished answers are cached"
            )
        now = time.monotonic()
        wait = retry_after_s(headers)
        if wait is None:
            pacer = self._fleet.pacers[i]
            resets = [w.reset_at - now for w in pacer.windows.values() if w.reset_at is not None]
            backoff = self.cfg.backoff_s * (2**streak) * (0.5 + self._rng.random())
            wait = min(max(resets, default=backoff), MAX_THROTTLE_S)
        self._throttles["http_429"] += 1
        self._throttles["retry_after_s"] += wait
        self._fleet.pacers[i].throttled(now, ticket, wait)

    def _served(self, i: int, req: GenRequest, result: GenResult) -> None:
        """Stop the run when the server named another model than the configured one (its answer is
        thrown away, its cost counted)."""
        served = result.served_model
        if served is None:
            if not self._unnamed:
                self._unnamed = True
                logger.warning("teacher %s: %s does not name the model it served; unchecked",
                               self.cfg.name, safe_url(self.urls[i]))  # fmt: skip
        elif not self.cfg.serves(served):
            if self._budget is not None:
                self._budget.discard(req.key, result.prompt_tokens, result.completion_tokens, 0)
            raise self._abort(self.cfg.impostor(served, safe_url(self.urls[i])))

    def _again_fits(self, req: GenRequest, empty: GenResult) -> bool:
        """An empty answer is thrown away (its cost counted): whether the budget lets it go again."""
        if self._budget is None:
            return True
        return self._budget.discard(req.key, empty.prompt_tokens, empty.completion_tokens, req.max_tokens)

    async def _post(
        self, session: aiohttp.ClientSession, i: int, ticket: Ticket, body: dict[str, Any]
    ) -> tuple[int, bytes, Mapping[str, str]]:
        """(status, body, headers) of one attempt, the whole of it (connect, first byte, every byte
        of the body) within `timeout_s`: a body trickled a byte at a time ends in `TimeoutError`."""
        url = f"{self.urls[i]}/chat/completions"
        async with asyncio.timeout(self.cfg.timeout_s):
            async with session.post(url, json=body, proxy=self.proxies[i]) as r:
                status, data = r.status, await r.read()
                self._fleet.pacers[i].heard(time.monotonic(), r.headers, ticket)
                return status, data, r.headers

    async def _one(
        self, session: aiohttp.ClientSession, req: GenRequest, slot: tuple[int, Ticket]
    ) -> GenResult | GenError:
        """Send `req` on `slot` (retries take slots of their own): its result or its `GenError`."""
        s = self.cfg.sampling
        body = {"model": self.model, "messages": req.messages, "max_tokens": req.max_tokens,
                "temperature": s.temperature, "top_p": s.top_p, "seed": req.seed}  # fmt: skip
        cost = request_cost(req)
        err = ""
        never_connected = True
        attempt = throttles = 0
        i, ticket = slot
        while True:
            connected = None
            status = 0
            empty: GenResult | None = None  # this attempt's answer, when it was empty
            try:
                if self._stopping:
                    raise Stopped()
                connected = True
                url = self.urls[i]
                try:
                    status, data, headers = await self._post(session, i, ticket, body)
                except TRANSPORT_ERRORS as exc:
                    err, connected = error_name(exc), not isinstance(exc, NEVER_CONNECTED)
                else:
                    if status == 200:
                        self._fleet.pacers[i].succeeded()
                        out = parse_body(req, data)
                        if isinstance(out, GenError):
                            return out
                        self._served(i, req, out)
                        if not is_empty(out):
                            return out
                        empty, err = out, f"empty answer (finish_reason={out.finish_reason})"
                    elif status in AUTH_STATUS:
                        raise self._auth_refused(i, status)
                    elif status == THROTTLED:
                        self._throttled(i, ticket, headers, data, throttles)
                        throttles += 1
                    else:
                        err = f"HTTP {status}"
                        if status not in RETRY_STATUS:
                            text = data.decode("utf-8", "replace")[:500]
                            hit = any(h in text.lower() for h in CONTEXT_HINTS)
                            reason = PROMPT_TOO_LONG if hit else REQUEST_ERROR
                            return GenError(key=req.key, id=req.id, reason=reason, detail=f"{err}: {text}")
            finally:
                self._fleet.pacers[i].done(ticket)
                self._release(i, connected)
            if status == THROTTLED:  # back-pressure: go again, not a retry
                i, ticket = await self._fleet.acquire(i, cost)
                continue
            never_connected = never_connected and not connected
            if attempt >= self.cfg.max_retries:
                break
            if empty is not None:
                if not self._again_fits(req, empty):
                    detail = f"{err}; max_cost leaves no room to ask again"
                    return GenError(key=req.key, id=req.id, reason=REQUEST_ERROR, detail=detail)
                self._empty += 1
            delay = self.cfg.backoff_s * (2**attempt) * (0.5 + self._rng.random())
            attempt += 1
            logger.warning("%s from %s, retry %d in %.1fs", err, safe_url(url), attempt, delay)
            if delay > 0 and self._halted is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._halted.wait(), delay)
            i, ticket = await self._fleet.acquire(i, cost)
        if empty is not None:  # empty after every retry: the teacher's answer (an empty_response)
            return empty
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
        elif not isinstance(exc, Stopped):
            self._out.put(exc)

    async def _room(self) -> None:
        """Wait until the consumer is less than `window` results behind; raises `Stopped` on a stop."""
        while self._taken - self._consumed >= self.window and not self._stopping:
            self._credit = asyncio.get_running_loop().create_future()
            if self._taken - self._consumed < self.window:  # the consumer took one meanwhile
                break
            await self._credit
        self._credit = None
        if self._stopping:
            raise Stopped()

    async def _feed(self, session: aiohttp.ClientSession, requests: Iterator[GenRequest]) -> None:
        """Start each request once a URL may take it, until the requests run out or the run stops."""
        loop = asyncio.get_running_loop()
        waits = isinstance(requests, BudgetGate) and requests.waits
        try:
            while True:
                await self._room()
                if self._stopping:
                    return
                if waits:  # a budget gate waiting for room must not hold up the loop
                    req = await loop.run_in_executor(None, next, requests, None)
                else:
                    req = next(requests, None)
                if req is None:
                    return
                slot = await self._fleet.acquire(None, request_cost(req))
                self._taken += 1
                task = loop.create_task(self._one(session, req, slot))
                self._tasks.add(task)
                task.add_done_callback(self._deliver)
        except Stopped:
            pass

    async def _drive(self, requests: Iterator[GenRequest]) -> None:
        """The run: feed, then wait for every request; the end (or a bug) goes to the consumer."""
        self._halted = asyncio.Event()
        self._budget = budget_of(requests)
        t = self.cfg.timeout_s  # each attempt's deadline, and of its connect and every read (`_post`)
        timeout = aiohttp.ClientTimeout(total=t, connect=t, sock_connect=t, sock_read=t)
        connector = aiohttp.TCPConnector(limit=self.cfg.concurrency * len(self.urls))
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
            self._fleet.cancel_timer()
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


def create(cfg: OpenAITeacher, workdir: Path) -> OpenAIBackend:
    """The registry's constructor (the backend keeps no state in `workdir`)."""
    return OpenAIBackend(cfg)


ENTRY = BackendEntry("openai", OpenAITeacher, create)
