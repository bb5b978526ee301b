"""The release folder, laid out like a Hub dataset repository, with its card (stage `release`).

Writes `data/<config>/train-0000k-of-0000n.parquet` for config `default` (all teachers) and one
config per teacher, `data/heldout/test-...parquet`, `README.md` (the card) and `funnel.png`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl
from pydantic import Field, field_validator

from cards.card import CardSettings, render_card
from cards.funnel import funnel_chart
from cards.hub import PublishConfig
from cards.inputs import ReleaseInputError, ReleaseInputs
from cards.shards import ConfigShards, write_shards
from core.config import StageConfig
from core.io import atomic_path

logger = logging.getLogger(__name__)

RESERVED_CONFIGS = ("default", "heldout")
FUNNEL_PNG = "funnel.png"


class ReleaseConfig(StageConfig):
    """The `release:` section of params.yaml."""

    pretty_name: str = Field(min_length=1)
    language: list[str] = Field(default_factory=lambda: ["en"], min_length=1)
    task_categories: list[str] = Field(default_factory=lambda: ["text-generation"])
    tags: list[str] = Field(default_factory=list)
    source_datasets: list[str] = Field(default_factory=list)
    shard_max_bytes: int = Field(500_000_000, gt=0, description="Arrow-size estimate per Parquet shard")
    extra_limitations: list[str] = Field(default_factory=list)

    @field_validator("language")
    @classmethod
    def _iso_codes(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if not (2 <= len(c) <= 3 and c.isalpha() and c.islower())]
        if bad:
            raise ValueError(f"language codes must be ISO 639 (2-3 lowercase letters), got {bad}")
        return v


def build_release(
    inputs: ReleaseInputs, cfg: ReleaseConfig, pub: PublishConfig, out: Path
) -> list[ConfigShards]:
    """Write the whole release folder at `out` atomically; returns the configs written."""
    teachers = inputs.teachers
    clash = [t for t in teachers if t in RESERVED_CONFIGS]
    if clash:
        raise ReleaseInputError(
            f"teacher names {clash} clash with the reserved config names {RESERVED_CONFIGS}"
        )
    with atomic_path(out, is_dir=True) as tmp:
        tmp.mkdir(parents=True, exist_ok=True)
        shards = [
            write_shards(inputs.traces, inputs.traces_schema, tmp, "default", "train", cfg.shard_max_bytes)
        ]
        for teacher in teachers:
            df = inputs.traces.filter(pl.col("teacher") == teacher)
            shards.append(write_shards(df, inputs.traces_schema, tmp, teacher, "train", cfg.shard_max_bytes))
        shards.append(
            write_shards(inputs.heldout, inputs.heldout_schema, tmp, "heldout", "test", cfg.shard_max_bytes)
        )
        funnel_chart(inputs.funnel, tmp / FUNNEL_PNG)
        settings = CardSettings(
            pretty_name=cfg.pretty_name,
            language=cfg.language,
            task_categories=cfg.task_categories,
            tags=cfg.tags,
            source_datasets=cfg.source_datasets,
            repo_id=pub.repo_id,
            version=pub.version,
            funnel_png=FUNNEL_PNG,
            extra_limitations=cfg.extra_limitations,
        )
        card = render_card(inputs, shards, settings)
        card.save(tmp / "README.md")
    for s in shards:
        logger.info(
            "config %s/%s: %d rows in %d file(s)", s.config_name, s.split, s.num_examples, len(s.files)
        )
    return shards
