"""Typed config of the `traces:` params section."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from core.config import StageConfig, repeated


class SamplingConfig(StageConfig):
    """Sampling params sent with every request (part of the cache key)."""

    temperature: float = Field(0.7, ge=0.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_tokens: int = Field(512, gt=0)
    seed: int = Field(0, ge=0, description="per-request seeds derive from this and the prompt id")


class TeacherConfig(StageConfig):
    """One teacher: a model behind a backend, over all prompts or a seeded fraction."""

    name: str = Field(min_length=1)
    backend: Literal["vllm", "openai"] = "vllm"
    model: str = Field(min_length=1, description="local folder or Hub id")
    revision: str | None = Field(None, description="Hub revision (a commit hash pins it)")
    sampling: SamplingConfig = SamplingConfig()
    max_model_len: int = Field(4096, gt=0)
    fraction: float = Field(1.0, gt=0.0, le=1.0, description="1.0 = every prompt, else a seeded subset")
    # vllm backend
    tensor_parallel_size: int = Field(1, ge=1)
    dtype: str = "auto"
    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0)
    max_in_flight: int = Field(4096, ge=1, description="requests kept in the engine at once")
    # openai backend
    base_urls: list[str] = Field(default_factory=list)
    served_model_name: str | None = None
    api_key_env: str | None = Field(None, description="environment variable holding the API key")
    concurrency: int = Field(
        8, ge=1, description="requests in flight per base URL (a fleet of n URLs has n x this in flight)"
    )
    max_retries: int = Field(5, ge=0)
    backoff_s: float = Field(1.0, ge=0.0)
    timeout_s: float = Field(600.0, gt=0.0)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if "/" in v or v.startswith(".") or v.strip() != v:
            raise ValueError(f"bad teacher name {v!r}")
        return v

    @model_validator(mode="after")
    def _backend(self) -> TeacherConfig:
        if self.backend == "openai" and not self.base_urls:
            raise ValueError("backend 'openai' needs base_urls")
        if self.sampling.max_tokens >= self.max_model_len:
            raise ValueError("sampling.max_tokens must be below max_model_len")
        return self


class GenerationRunConfig(StageConfig):
    """How a run sends requests and caches answers (`traces:`, and `verify:` for its judge)."""

    SECTION: ClassVar[str]  # the params section, named in messages
    shard_size: int = Field(256, ge=1, description="completed generations per cache shard")
    flush_s: float = Field(5.0, gt=0.0, description="an answer is cached at most this long after it came")
    cache_pack_bytes: int = Field(
        256_000_000, gt=0, description="cache shards are compacted into files of about this size"
    )
    max_failure_rate: float = Field(
        0.1, ge=0.0, le=1.0, description="a run stops when more of its results are request errors"
    )
    min_results_for_rate: int = Field(
        20, ge=1, description="results a run needs before max_failure_rate applies"
    )


class TracesConfig(GenerationRunConfig):
    """The `traces:` section."""

    SECTION: ClassVar[str] = "traces"
    teachers: list[TeacherConfig]
    min_new_tokens: int = Field(16, ge=1, description="a prompt needs room for this many new tokens")
    remove_truncated: bool = True
    min_response_chars: int = Field(1, ge=0)
    refusal_phrases: list[str] = Field(default_factory=list)

    @field_validator("teachers")
    @classmethod
    def _unique(cls, v: list[TeacherConfig]) -> list[TeacherConfig]:
        if not v:
            raise ValueError("at least one teacher")
        names = [t.name for t in v]
        dupes = repeated(names)
        if dupes:
            raise ValueError(f"duplicate teacher names {dupes}")
        return v
