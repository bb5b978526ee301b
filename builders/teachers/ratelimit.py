"""Rate limits as back-pressure: what a server's headers allow, per URL, and the teacher's own ceilings.

A server that limits requests and tokens per window says so on every answer, as OpenAI does:
`x-ratelimit-{limit,remaining,reset}-{requests,tokens}` (reset as `1s`, `6m0s`, `20ms`), and on a
429 `Retry-After` (seconds or an HTTP date) or `retry-after-ms`. `UrlPacer` keeps, per URL and per
dimension (requests, tokens), what may still be sent before the window resets: the `remaining` of
the newest answer (newest by when its request was sent) less what was sent after that request,
less what is sent from then on; at the reset the whole limit is available again. A request is
sent only when both dimensions have room for it (its tokens: prompt tokens plus `max_tokens`, as
OpenAI counts them against a token limit). A 429 pauses the URL for its `Retry-After` and halves
the requests the URL may hold at once; each answer adds back 1/cap (additive increase,
multiplicative decrease). Until a URL has answered once it holds one request, so a run learns the
limits before it sends a burst. `Bucket` is a teacher-wide ceiling (`rpm`, `tpm`) that spaces
requests evenly.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
DIMENSIONS = ("requests", "tokens")


def parse_duration(text: str | None) -> float | None:
    """Seconds in an OpenAI reset duration (`1s`, `6m0s`, `20ms`, `1h2m3.5s`) or a bare number."""
    if text is None:
        return None
    text = text.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """How long a 429 asks to wait: `retry-after-ms`, else `Retry-After` (seconds or an HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = parse_duration(value)
    if seconds is not None:
        return seconds
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _int(value: str | None) -> int | None:
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


@dataclass
class Window:
    """One dimension's room at one URL: `avail` until `reset_at`, then `limit` again."""

    limit: int
    avail: float
    reset_at: float | None


@dataclass(frozen=True)
class Ticket:
    """What a URL's pacer noted when a request was sent (to read the answer's headers against)."""

    seq: int  # requests sent at the URL before this one
    sent_at: float
    cost: float  # its tokens


@dataclass
class UrlPacer:
    """What one URL allows now: requests in flight (AIMD cap), 429 pauses and header windows.

    The room of a window is estimated from the answer to the latest-sent request heard so far: what
    the server had left when it took that request, less every other request still unanswered (the
    server may not have counted them yet), less what is sent from then on. An older request's
    answer tells nothing newer and is ignored. When the window resets, its limit is available
    again, less what is still unanswered (it may land in the new window)."""

    ceiling: int  # the most requests in flight (`concurrency`)
    cap: float = 1.0
    answered: bool = False  # until the first answer: one request in flight
    paused_until: float = 0.0
    last_decrease: float = -math.inf
    windows: dict[str, Window] = field(default_factory=dict)
    seq: int = 0
    heard_seq: int = -1  # the latest-sent request whose answer set the windows
    inflight: dict[int, float] = field(default_factory=dict)  # seq -> tokens of requests not answered

    def __post_init__(self) -> None:
        self.cap = float(self.ceiling)

    def slots(self) -> int:
        """Requests the URL may hold at once now."""
        return max(1, int(self.cap)) if self.answered else 1

    def _unanswered(self, name: str, but: int | None = None) -> float:
        return sum(1.0 if name == "requests" else c for seq, c in self.inflight.items() if seq != but)

    def room(self, name: str, now: float) -> float:
        """What window `name` has left now (after a reset: its limit less what is unanswered)."""
        w = self.windows[name]
        if w.reset_at is not None and now >= w.reset_at:
            w.avail, w.reset_at = w.limit - self._unanswered(name), None
        return w.avail

    def wait(self, now: float, cost: float) -> float:
        """Seconds until a request of `cost` tokens may be sent here (0: now; inf: when a request in
        flight answers)."""
        until = self.paused_until - now
        for name, amount in (("requests", 1.0), ("tokens", cost)):
            if name not in self.windows:
                continue
            w = self.windows[name]
            room = self.room(name, now)
            if room >= amount or (room >= w.limit - self._unanswered(name) and amount > w.limit):
                continue  # it fits (a request larger than the whole limit goes alone)
            if w.reset_at is not None:
                until = max(until, w.reset_at - now)
            elif self.inflight:  # reset and filled again: the next answer says when it resets
                until = math.inf
        return max(0.0, until)

    def send(self, now: float, cost: float) -> Ticket:
        """Note a request of `cost` tokens sent now."""
        ticket = Ticket(self.seq, now, cost)
        self.inflight[self.seq] = cost
        self.seq += 1
        for name, amount in (("requests", 1.0), ("tokens", cost)):
            if name in self.windows:
                self.windows[name].avail -= amount
        return ticket

    def done(self, ticket: Ticket) -> None:
        """The request of `ticket` is answered (or failed)."""
        self.inflight.pop(ticket.seq, None)

    def heard(self, now: float, headers: Mapping[str, str], ticket: Ticket) -> None:
        """Read an answer's rate-limit headers (any status), before `done`."""
        self.answered = True
        if ticket.seq < self.heard_seq:
            return
        for name in DIMENSIONS:
            limit = _int(headers.get(f"x-ratelimit-limit-{name}"))
            remaining = _int(headers.get(f"x-ratelimit-remaining-{name}"))
            if limit is None or remaining is None:
                continue
            reset = parse_duration(headers.get(f"x-ratelimit-reset-{name}"))
            room = remaining - self._unanswered(name, but=ticket.seq)
            self.windows[name] = Window(limit, room, now + reset if reset is not None else None)
            self.heard_seq = ticket.seq

    def succeeded(self) -> None:
        """Additive increase: one more slot per cap answers."""
        self.cap = min(float(self.ceiling), self.cap + 1.0 / self.cap)

    def throttled(self, now: float, ticket: Ticket, wait_s: float) -> None:
        """A 429: pause `wait_s`; halve the cap once per round of requests (those sent after the
        last decrease), so a burst of 429s from one moment halves it once."""
        self.paused_until = max(self.paused_until, now + wait_s)
        if ticket.sent_at >= self.last_decrease:
            self.cap = max(1.0, self.cap / 2)
            self.last_decrease = now


@dataclass
class Bucket:
    """A ceiling of `rate` a second: requests spaced by their cost / rate (a token bucket that holds
    one request's cost, so no window of any length sees more than rate x its length plus one)."""

    rate: float
    level: float = 0.0
    at: float = 0.0

    def __post_init__(self) -> None:
        self.level, self.at = 1.0, time.monotonic()

    def _refill(self, now: float, cost: float) -> None:
        self.level = min(max(cost, 1.0), self.level + (now - self.at) * self.rate)
        self.at = now

    def wait(self, now: float, cost: float) -> float:
        self._refill(now, cost)
        return 0.0 if self.level >= cost else (cost - self.level) / self.rate

    def take(self, now: float, cost: float) -> None:
        self._refill(now, cost)
        self.level -= cost


@dataclass
class Ceilings:
    """A teacher's own `rpm` and `tpm` (over all its URLs)."""

    requests: Bucket | None
    tokens: Bucket | None

    @classmethod
    def per_minute(cls, rpm: float | None, tpm: float | None) -> Ceilings:
        return cls(Bucket(rpm / 60) if rpm else None, Bucket(tpm / 60) if tpm else None)

    def wait(self, now: float, cost: float) -> float:
        waits = [b.wait(now, c) for b, c in ((self.requests, 1.0), (self.tokens, cost)) if b is not None]
        return max(waits, default=0.0)

    def take(self, now: float, cost: float) -> None:
        for b, c in ((self.requests, 1.0), (self.tokens, cost)):
            if b is not None:
                b.take(now, c)
