"""Typed config of the `verify:` params section."""

from __future__ import annotations

from pydantic import Field

from builders.teachers.config import TeacherConfig, TracesConfig
from core.config import StageConfig


class VerifyConfig(StageConfig):
    """The `verify:` section: the removal policy and the optional judge of open answers."""

    drop_wrong: bool = Field(True, description="remove traces whose answer is wrong (else flag them)")
    drop_unverifiable: bool = Field(False, description="remove traces whose answer cannot be checked")
    judge: TeacherConfig | None = Field(None, description="a teacher-like model judging open answers")
    judge_prompt: str | None = Field(
        None, description="the judging prompt file; null: builders/verification/judge_prompt.txt"
    )
    shard_size: int = Field(256, ge=1, description="judge answers per cache shard")
    flush_s: float = Field(
        5.0, gt=0.0, description="a judge answer is cached at most this long after it came"
    )
    cache_pack_bytes: int = Field(256_000_000, gt=0, description="cache shards are compacted to this size")
    max_failure_rate: float = Field(0.1, ge=0.0, le=1.0, description="stop when more judge requests fail")
    min_results_for_rate: int = Field(20, ge=1, description="judge results before max_failure_rate applies")

    def generation_config(self) -> TracesConfig:
        """The judge's run settings in the shape the teachers' `generate` takes (one copy of that loop)."""
        assert self.judge is not None
        return TracesConfig(
            teachers=[self.judge],
            shard_size=self.shard_size,
            flush_s=self.flush_s,
            cache_pack_bytes=self.cache_pack_bytes,
            max_failure_rate=self.max_failure_rate,
            min_results_for_rate=self.min_results_for_rate,
        )
