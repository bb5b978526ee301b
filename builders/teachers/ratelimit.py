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
limits before it sends a burst. `Bucket` is a teacher-wide ceiling (`rpm`, `tpm`): a token bucket
refilled continuously and holding one second's worth.
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

    def room(self, now: float) -> float:
        if self.reset_at is not None and now >= self.reset_at:
            self.avail, self.reset_at = float(self.limit), None
        return self.avail


@dataclass(frozen=True)
class Ticket:
    """What a URL's pacer noted when a request was sent (to read the answer's headers against)."""

    seq: int  # requests sent at the URL before this one
    tokens_before: float  # tokens sent at the URL before this one
    sent_at: float
    cost: float  # its tokens


@dataclass
class UrlPacer:
    """What one URL allows now: requests in flight (AIMD cap), 429 pauses and header windows."""

    ceiling: int  # the most requests in flight (`concurrency`)
    cap: float = 1.0
    answered: bool = False  # until the first answer: one request in flight
    paused_until: float = 0.0
    last_decrease: float = -math.inf
    windows: dict[str, Window] = field(default_factory=dict)
    seq: int = 0
    tokens_sent: float = 0.0
    info_seq: int = -1  # the `seq` of the request whose headers the windows come from

    def __post_init__(self) -> None:
        self.cap = float(self.ceiling)

    def slots(self) -> int:
        """Requests the URL may hold at once now."""
        return max(1, int(self.cap)) if self.answered else 1

    def wait(self, now: float, cost: float) -> float:
        """Seconds until a request of `cost` tokens may be sent here (0: now)."""
        until = self.paused_until - now
        for name, amount in (("requests", 1.0), ("tokens", cost)):
            w = self.windows.get(name)
            if w is None or w.reset_at is None:  # no limit known, or no time it resets: the server decides
                continue
            room = w.room(now)
            if room < amount and room < w.limit:  # a request larger than the whole limit goes when it is full
                until = max(until, (w.reset_at or now) - now)
        return max(0.0, until)

    def send(self, now: float, cost: float) -> Ticket:
        """Note a request of `cost` tokens sent now."""
        ticket = Ticket(self.seq, self.tokens_sent, now, cost)
        self.seq += 1
        self.tokens_sent += cost
        for name, amount in (("requests", 1.0), ("tokens", cost)):
            if name in self.windows:
                self.windows[name].avail -= amount
        return ticket

    def heard(self, now: float, headers: Mapping[str, str], ticket: Ticket) -> None:
        """Read an answer's rate-limit headers (any status)."""
        self.answered = True
        if ticket.seq < self.info_seq:
            return  # an older request's view of the server
        after = {"requests": self.seq - ticket.seq - 1, "tokens": self.tokens_sent - ticket.tokens_before
                 - ticket.cost}  # fmt: skip
        for name in DIMENSIONS:
            limit = _int(headers.get(f"x-ratelimit-limit-{name}"))
            remaining = _int(headers.get(f"x-ratelimit-remaining-{name}"))
            if limit is None or remaining is None:
                continue
            reset = parse_duration(headers.get(f"x-ratelimit-reset-{name}"))
            reset_at = now + reset if reset is not None else None
            self.windows[name] = Window(limit, remaining - after[name], reset_at)
            self.info_seq = ticket.seq

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
    """A token bucket: `rate` per second, holding one second's worth (at least one request's cost)."""

    rate: float
    level: float = 0.0
    at: float = 0.0

    def __post_init__(self) -> None:
        self.level, self.at = max(self.rate, 1.0), time.monotonic()

    def _refill(self, now: float, cost: float) -> None:
        capacity = max(self.rate, cost, 1.0)
        self.level = min(capacity, self.level + (now - self.at) * self.rate)
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
