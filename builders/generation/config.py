"""How a generation run sends requests and caches answers (`traces:` and `verify:` share it)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from core.config import StageConfig


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
