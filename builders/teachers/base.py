"""What every backend takes and returns."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class GenRequest:
    """One chat request: `key` is its cache key, `id` the prompt id."""

    key: str
    id: str
    messages: list[dict[str, str]]
    max_tokens: int
    seed: int


@dataclass(frozen=True)
class GenResult:
    """A completed generation (any finish reason), as the teacher returned it."""

    key: str
    id: str
    response: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    prompt_text: str | None = None


@dataclass(frozen=True)
class GenError:
    """A request the teacher refused for good (e.g. HTTP 400); not cached, reported as removed."""

    key: str
    id: str
    reason: str
    detail: str


class Backend(Protocol):
    """A teacher backend."""

    def generate(self, requests: Iterable[GenRequest]) -> Iterator[GenResult | GenError]:
        """Yield results as they complete (in any order)."""
        ...

    def stop(self) -> None:
        """Send nothing more; `generate` still yields what was already sent, then ends."""
        ...

    def close(self) -> None:
        """Release engines, clients, threads."""
        ...
