"""The `openai` backend's slots: which URL of a fleet a request goes to, and when.

Each URL holds at most what its pacer allows (`builders.generation.ratelimit.UrlPacer`: the AIMD cap,
a 429 pause, the room of the rate-limit windows its headers announce), and the teacher's own `rpm`
and `tpm` cap the fleet. A request takes a free slot of the least busy URL that may take it now;
otherwise it waits, first come first served, for a slot to be released or a rate window to open
(a timer wakes the queue then). A URL refusing connections gets no request for `DOWN_S` seconds,
then one probe; a request retried after a failure avoids the URL that failed it while another is
up. Everything here runs on the backend's event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from builders.generation.ratelimit import Ceilings, Ticket, UrlPacer

DOWN_S = 2.0  # a URL that refused a connection gets no request for this long, then one probe
INF = float("inf")


class Stopped(Exception):
    """A request was dropped because the run is stopping."""


class Fleet:
    """The slots of `n` URLs for one run."""

    def __init__(self, n: int, concurrency: int, rpm: float | None, tpm: float | None) -> None:
        self.n = n
        self.busy = [0] * n
        self.pacers = [UrlPacer(concurrency) for _ in range(n)]
        self.ceilings = Ceilings.per_minute(rpm, tpm)
        self.down: dict[int, float] = {}  # URLs whose last attempt could not connect -> next probe
        self.stopping = False
        self.sent = 0  # HTTP requests sent, retries included
        self.wait_s = 0.0  # seconds requests waited for a slot or a rate window, summed
        self._waiters: deque[tuple[int | None, float, asyncio.Future[int | None]]] = deque()
        self._tickets: dict[int, Ticket] = {}  # id of a waiting request's future -> its ticket
        self._timer: asyncio.TimerHandle | None = None  # wakes `dispatch` when a rate window opens
        self._timer_at = 0.0

    def all_down(self) -> bool:
        return len(self.down) == self.n

    def choose(self, avoid: int | None, cost: float) -> tuple[int | None, float]:
        """(the URL a request of `cost` tokens leaving `avoid` takes now, or None; when None, the
        seconds until a rate window opens, or inf: wait for a slot)."""
        now, n = time.monotonic(), self.n
        up = [self.down.get(i, 0.0) <= now for i in range(n)]
        up = up if any(up) else [True] * n  # every URL is down: try them anyway
        others_up = any(u for i, u in enumerate(up) if i != avoid)
        fleet_wait = self.ceilings.wait(now, cost)
        ready, wake = [], INF
        for i in range(n):
            if not up[i] or (i == avoid and others_up) or self.busy[i] >= self.pacers[i].slots():
                continue
            wait = max(fleet_wait, self.pacers[i].wait(now, cost))
            if wait <= 0:
                ready.append(i)
            wake = min(wake, wait)
        return min(ready, key=self.busy.__getitem__, default=None), wake  # the least busy

    def take(self, i: int, cost: float) -> tuple[int, Ticket]:
        now = time.monotonic()
        self.busy[i] += 1
        self.sent += 1
        self.ceilings.take(now, cost)
        if i in self.down:
            self.down[i] = now + DOWN_S  # one probe per DOWN_S
        return i, self.pacers[i].send(now, cost)

    async def acquire(self, avoid: int | None, cost: float) -> tuple[int, Ticket]:
        """A slot (its URL's index) and its ticket; raises `Stopped` once the run is stopping."""
        start = time.monotonic()
        try:
            while not self.stopping:
                i, wake = self.choose(avoid, cost)
                if i is not None:
                    return self.take(i, cost)
                self._wake_in(wake)
                fut: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
                self._waiters.append((avoid, cost, fut))
                i = await fut  # a slot handed over by `dispatch`, or None: look again
                if i is not None:
                    return i, self._tickets.pop(id(fut))
            raise Stopped()
        finally:
            self.wait_s += time.monotonic() - start

    def _wake_in(self, seconds: float) -> None:
        """Run `dispatch` in `seconds` (when a rate window or a pause ends), unless one runs sooner."""
        if seconds == INF:
            return
        at = time.monotonic() + seconds
        if self._timer is not None and self._timer_at <= at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = asyncio.get_running_loop().call_later(seconds + 0.001, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.dispatch()

    def release(self, i: int, connected: bool | None) -> None:
        """Free a slot; `connected` is whether the attempt reached the server (None: not made)."""
        self.busy[i] -= 1
        if connected:
            self.down.pop(i, None)
        elif connected is False:
            if i not in self.down:
                asyncio.get_running_loop().call_later(DOWN_S, self.dispatch)  # its probe is due then
            self.down[i] = time.monotonic() + DOWN_S
        self.dispatch()

    def dispatch(self) -> None:
        """Hand free slots to waiting requests, first come first served."""
        if self.stopping:
            return
        full: set[int | None] = set()  # `avoid` values that found no slot in this pass
        wake = INF
        for _ in range(len(self._waiters)):
            avoid, cost, fut = self._waiters.popleft()
            if fut.done():
                continue
            i = None
            if avoid not in full:
                i, wait = self.choose(avoid, cost)
                wake = min(wake, wait)
            if i is None:
                full.add(avoid)
                self._waiters.append((avoid, cost, fut))
            else:
                i, ticket = self.take(i, cost)
                self._tickets[id(fut)] = ticket
                fut.set_result(i)
        if self._waiters:
            self._wake_in(wake)

    def halt(self) -> None:
        """Stop: every waiting request gives up, the timer ends."""
        self.stopping = True
        for _, _, fut in self._waiters:
            if not fut.done():
                fut.set_result(None)
        self._waiters.clear()
        self.cancel_timer()

    def cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
