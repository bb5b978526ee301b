"""Rate limits as back-pressure: what a server's headers allow, per URL, and the teacher's own ceilings.

A server that limits requests and tokens per window says so on every answer, as OpenAI does:
`x-ratelimit-{limit,remaining,reset}-{requests,tokens}` (reset as `1s`, `6m0s`, `20ms`), and on a
429 `Retry-After` (seconds or an HTTP date) or `retry-after-ms`. `UrlPacer` keeps, per URL and per
dimension (requests, tokens), a bound on what may still be sent before the window resets (see its
docstring); at the reset the whole limit is available again. A request is
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
    """One dimension's room at one URL: `avail` until `reset_at`, then `limit` again. `fresh`: it
    has just reset, and the next answer's headers set it."""

    limit: int
    avail: float
    reset_at: float | None
    fresh: bool = False


@dataclass(frozen=True)
class Ticket:
    """What a URL's pacer noted when a request was sent (to read the answer's headers against)."""

    seq: int  # requests sent at the URL before this one
    sent_at: float
    cost: float  # its tokens
    tokens_before: float  # tokens of the requests sent at the URL before this one
    unanswered: tuple[float, float]  # (requests, tokens) in flight when it was sent


@dataclass
class UrlPacer:
    """What one URL allows now: requests in flight (AIMD cap), 429 pauses and header windows.

    An answer to request X says what the server had left when it took X. Any request in flight when
    X was sent, and any sent after it, may have reached the server after X (requests sent together
    arrive in any order), so the room now is at most that less all of those, less what is sent
    from then on: within a window the smallest such bound holds, and the latest reset. When the
    window resets, its limit is available again less what is unanswered (it may land in the new
    window), until the next answer says more."""

    ceiling: int  # the most requests in flight (`concurrency`)
    cap: float = 1.0
    answered: bool = False  # until the first answer: one request in flight
    paused_until: float = 0.0
    last_decrease: float = -math.inf
    windows: dict[str, Window] = field(default_factory=dict)
    seq: int = 0
    tokens_sent: float = 0.0
    inflight: dict[int, float] = field(default_factory=dict)  # seq -> tokens of requests not answered

    def __post_init__(self) -> None:
        self.cap = float(self.ceiling)

    def slots(self) -> int:
        """Requests the URL may hold at once now."""
        return max(1, int(self.cap)) if self.answered else 1

    def _unanswered(self, name: str) -> float:
        return float(len(self.inflight)) if name == "requests" else sum(self.inflight.values())

    def room(self, name: str, now: float) -> float:
        """What window `name` has left now (after a reset: its limit less what is unanswered)."""
        w = self.windows[name]
        if w.reset_at is not None and now >= w.reset_at:
            w.avail, w.reset_at, w.fresh = w.limit - self._unanswered(name), None, True
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
        unanswered = (float(len(self.inflight)), sum(self.inflight.values()))
        ticket = Ticket(self.seq, now, cost, self.tokens_sent, unanswered)
        self.inflight[self.seq] = cost
        self.seq += 1
        self.tokens_sent += cost
        for name, amount in (("requests", 1.0), ("tokens", cost)):
            if name in self.windows:
                self.windows[name].avail -= amount
        return ticket

    def done(self, ticket: Ticket) -> None:
        """The request of `ticket` is answered (or failed)."""
        self.inflight.pop(ticket.seq, None)

    def heard(self, now: float, headers: Mapping[str, str], ticket: Ticket) -> None:
        """Read an answer's rate-limit headers (any status)."""
        self.answered = True
        later = {  # what may have reached the server after the request: in flight then, or sent since
            "requests": ticket.unanswered[0] + self.seq - ticket.seq - 1,
            "tokens": ticket.unanswered[1] + self.tokens_sent - ticket.tokens_before - ticket.cost,
        }
        for name in DIMENSIONS:
            limit = _int(headers.get(f"x-ratelimit-limit-{name}"))
            remaining = _int(headers.get(f"x-ratelimit-remaining-{name}"))
            if limit is None or remaining is None:
                continue
            reset = parse_duration(headers.get(f"x-ratelimit-reset-{name}"))
            room, reset_at = remaining - later[name], now + reset if reset is not None else None
            w = self.windows.get(name)
            if w is None or w.fresh or w.limit != limit:
                self.windows[name] = Window(limit, room, reset_at)
                continue
            w.avail = min(w.avail, room)
            if reset_at is not None:
                w.reset_at = max(w.reset_at or reset_at, reset_at)

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
