"""The release folder, laid out like a Hub dataset repository, with its card (stage `release`).

Writes `data/<config>/train-0000k-of-0000n.parquet` for config `default` (all teachers) and one
config per teacher, `data/heldout/test-...parquet`, `README.md` (the card) and `funnel.png`.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import pyarrow.compute as pc
from pydantic import Field, field_validator

from cards.card import CardSettings, render_card
from cards.funnel import funnel_chart
from cards.hub import PublishConfig
from cards.inputs import ReleaseInputError, ReleaseInputs
from cards.shards import ConfigShards, ShardWriter, arrow_size_estimate, write_shards
from core.config import StageConfig
from core.io import atomic_path, reading, to_arrow

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
    shard_max_bytes: int = Field(500_000_000, gt=0, description="Arrow-size estimate per shard, see shards")
    extra_limitations: list[str] = Field(default_factory=list)

    @field_validator("language")
    @classmethod
    def _iso_codes(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if not (2 <= len(c) <= 3 and c.isalpha() and c.islower())]
        if bad:
            raise ValueError(f"language codes must be ISO 639 (2-3 lowercase letters), got {bad}")
        return v


def write_trace_configs(inputs: ReleaseInputs, root: Path, shard_max_bytes: int) -> list[ConfigShards]:
    """Configs `default` (every row) and one per teacher, in one streaming pass over the trace table.

    Each batch goes to the `default` writer and, filtered on `teacher`, to that teacher's writer, so
    the table is read once whatever the number of teachers; shard counts come from one size estimate.
    """
    traces = inputs.traces
    with reading(traces.path):
        sizes = arrow_size_estimate(traces.lazy(), traces.schema, by="teacher")
    plan = {"default": (traces.rows, sum(sizes.values()))}
    plan |= {t: (traces.rows_per_teacher[t], sizes[t]) for t in inputs.teachers}
    with contextlib.ExitStack() as stack:
        writers = {}
        for name, (rows, size) in plan.items():
            writer = ShardWriter(root, name, "train", traces.schema, rows, size, shard_max_bytes)
            writers[name] = stack.enter_context(writer)
        for batch in traces.batches():
            writers["default"].write(batch)
            teacher = batch.column("teacher")
            for name in inputs.teachers:
                part = batch.filter(pc.equal(teacher, name))
                if part.num_rows:
                    writers[name].write(part)
        return [w.finish() for w in writers.values()]


def write_heldout(inputs: ReleaseInputs, root: Path, shard_max_bytes: int) -> ConfigShards:
    """Config `heldout`, split `test`: the held-out prompts (a small table, in memory)."""
    size = arrow_size_estimate(inputs.heldout.lazy(), inputs.heldout_schema)[None]
    table = to_arrow(inputs.heldout, inputs.heldout_schema)
    return write_shards(
        table.to_batches(), table.schema, root, "heldout", "test", shard_max_bytes, table.num_rows, size
    )


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
        shards = write_trace_configs(inputs, tmp, cfg.shard_max_bytes)
        shards.append(write_heldout(inputs, tmp, cfg.shard_max_bytes))
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
