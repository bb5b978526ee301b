"""Typed config of the `verify:` params section."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from builders.generation.config import GenerationRunConfig
from builders.generation.registry import TeacherConfig


class VerifyConfig(GenerationRunConfig):
    """The `verify:` section: the removal policy and the optional judge of open answers (the judge's
    run settings, shard_size to min_results_for_rate, as in `traces:`)."""

    SECTION: ClassVar[str] = "verify"

    drop_wrong: bool = Field(True, description="remove traces whose answer is wrong (else flag them)")
    drop_unverifiable: bool = Field(False, description="remove traces whose answer cannot be checked")
    judge: TeacherConfig | None = Field(None, description="a teacher-like model judging open answers")
    judge_prompt: str | None = Field(
        None, description="the judging prompt file; null: builders/verify/judge_prompt.txt"
    )
    workers: int | None = Field(None, ge=1, description="processes checking answers; null = all cores")
