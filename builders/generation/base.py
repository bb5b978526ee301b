"""What every backend takes and returns, and the part of a teacher's config every backend shares."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from pydantic import Field, field_validator, model_validator

from core.config import StageConfig

PROMPT_TOO_LONG = "prompt_too_long"  # the prompt leaves no room for an answer in the model's context
REQUEST_ERROR = "request_error"  # the request failed (the reason the failure-rate guard counts)


@dataclass(frozen=True)
class GenRequest:
    """One chat request: `key` is its cache key, `id` the prompt id; `prompt_tokens` its prompt's
    tokens by the teacher's tokenizer (None when it has none). `prompt_token_ids`: the prompt already
    rendered and tokenized (eval renders as training did); the `vllm` backend sends these ids instead
    of rendering `messages`, the API backends always send `messages`."""

    key: str
    id: str
    messages: list[dict[str, str]]
    max_tokens: int
    seed: int
    prompt_tokens: int | None = None
    prompt_token_ids: list[int] | None = None


@dataclass(frozen=True)
class GenResult:
    """A completed generation (any finish reason), as the teacher returned it; `served_model` is the
    model name the server reported for it (None: not reported, or a local engine)."""

    key: str
    id: str
    response: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    prompt_text: str | None = None
    served_model: str | None = None


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

    def figures(self) -> dict[str, Any]:
        """What the last run did beyond its results (requests sent, 429s, waits): for run.json."""
        ...


class SamplingConfig(StageConfig):
    """Sampling params sent with every request (part of the cache key)."""

    temperature: float = Field(0.7, ge=0.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_tokens: int = Field(512, gt=0)
    seed: int = Field(0, ge=0, description="per-request seeds derive from this and the prompt id")


class TeacherBase(StageConfig):
    """What every teacher has, whatever its backend: a model over all prompts or a seeded fraction.

    Each backend subclasses it with `backend: Literal[<its name>]` and its own fields; the registry
    (`builders.generation.registry`) joins them into one union told apart by `backend`."""

    PRICED_AT: ClassVar[str | None] = None  # "online" or "batch": which price its answers are billed at
    GATE_WAITS: ClassVar[bool] = False  # its backend takes requests on a thread of its own (budget.py)
    name: str = Field(min_length=1)
    backend: str
    model: str = Field(min_length=1, description="local folder or Hub id")
    revision: str | None = Field(None, description="Hub revision (a commit hash pins it)")
    sampling: SamplingConfig = SamplingConfig()
    max_model_len: int = Field(4096, gt=0)
    fraction: float = Field(1.0, gt=0.0, le=1.0, description="1.0 = every prompt, else a seeded subset")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if "/" in v or v.startswith(".") or v.strip() != v:
            raise ValueError(f"bad teacher name {v!r}")
        return v

    @model_validator(mode="after")
    def _lengths(self) -> TeacherBase:
        if self.sampling.max_tokens >= self.max_model_len:
            raise ValueError("sampling.max_tokens must be below max_model_len")
        return self

    @property
    def tokenizer_source(self) -> str:
        """What the teacher's tokenizer loads from (the model, unless a backend says otherwise)."""
        return self.model


@dataclass(frozen=True)
class BackendEntry:
    """One backend in the registry: its name (the `backend:` value), its config and its constructor.

    `create(config, workdir)`: `workdir` is the run's generation cache folder, where a backend may
    keep state that must outlive the process (the batch backend's batch ids)."""

    name: str
    config: type[TeacherBase]
    create: Callable[[Any, Path], Backend]
