"""The `release:` section of params.yaml: what the card says that the stages' outputs do not."""

from __future__ import annotations

from pydantic import Field, field_validator

from core.config import StageConfig

GENERIC_SYSTEM_PROMPT = "You are a helpful assistant."


class ReleaseConfig(StageConfig):
    """The `release:` section of params.yaml."""

    pretty_name: str = Field(min_length=1)
    language: list[str] = Field(default_factory=lambda: ["en"], min_length=1)
    task_categories: list[str] = Field(default_factory=lambda: ["text-generation"])
    tags: list[str] = Field(default_factory=list)
    source_datasets: list[str] = Field(default_factory=list)
    shard_max_bytes: int = Field(500_000_000, gt=0, description="Arrow-size estimate per shard, see shards")
    extra_limitations: list[str] = Field(default_factory=list)
    # Orca 2's prompt erasing: the student sees a generic system message, not the detailed one the
    # teacher answered (kept in `original_system_prompt`), so it learns the strategy untold.
    erase_system_prompt: bool = False
    generic_system_prompt: str = GENERIC_SYSTEM_PROMPT

    @property
    def erased_with(self) -> str | None:
        """The generic system message replacing each trace's, or None when nothing is erased."""
        return self.generic_system_prompt if self.erase_system_prompt else None

    @field_validator("language")
    @classmethod
    def _iso_codes(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if not (2 <= len(c) <= 3 and c.isalpha() and c.islower())]
        if bad:
            raise ValueError(f"language codes must be ISO 639 (2-3 lowercase letters), got {bad}")
        return v
