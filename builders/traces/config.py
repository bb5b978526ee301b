"""Typed config of the `traces:` params section."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, field_validator

from builders.generation.base import TeacherBase
from builders.generation.config import GenerationRunConfig
from builders.generation.registry import TeacherConfig
from core.config import repeated


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
    def _unique(cls, v: list[TeacherBase]) -> list[TeacherBase]:
        if not v:
            raise ValueError("at least one teacher")
        names = [t.name for t in v]
        dupes = repeated(names)
        if dupes:
            raise ValueError(f"duplicate teacher names {dupes}")
        return v
