"""The release folder, laid out like a Hub dataset repository, with its card (stage `release`).

Writes `data/<config>/train-0000k-of-0000n.parquet` for config `default` (all teachers) and one
config per teacher, `data/heldout/test-...parquet`, `README.md` (the card) and `funnel.png`.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import polars as pl
import pyarrow as pa
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
ORIGINAL_SYSTEM_PROMPT = "original_system_prompt"
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


def erased_schema(schema: pa.Schema) -> pa.Schema:
    """`schema` with `original_system_prompt` right after `system_prompt`."""
    field = schema.field("system_prompt").with_name(ORIGINAL_SYSTEM_PROMPT)
    return schema.insert(schema.get_field_index("system_prompt") + 1, field)


def erase_system_prompt(batch: pa.RecordBatch, generic: str) -> pa.RecordBatch:
    """`batch` with each `system_prompt` replaced by `generic`, the original in `original_system_prompt`."""
    i = batch.schema.get_field_index("system_prompt")
    original = batch.column(i)
    batch = batch.set_column(i, "system_prompt", pa.array([generic] * batch.num_rows, original.type))
    return batch.add_column(i + 1, ORIGINAL_SYSTEM_PROMPT, original)


def write_trace_configs(
    inputs: ReleaseInputs, root: Path, shard_max_bytes: int, erase_with: str | None = None
) -> list[ConfigShards]:
    """Configs `default` (every row) and one per teacher, in one streaming pass over the trace table.

    Each batch goes to the `default` writer and, filtered on `teacher`, to that teacher's writer, so
    the table is read once whatever the number of teachers; shard counts come from one size estimate.
    With `erase_with`, every row's system prompt is replaced by that text (`erase_system_prompt`).
    """
    traces = inputs.traces
    schema, rows = traces.table.schema, traces.table.lazy()
    if erase_with is not None:
        schema = erased_schema(schema)
        rows = rows.with_columns(pl.col("system_prompt").alias(ORIGINAL_SYSTEM_PROMPT)).with_columns(
            pl.lit(erase_with).alias("system_prompt")
        )
    with reading(traces.table.path):
        sizes = arrow_size_estimate(rows, schema, by="teacher")
    plan = {"default": (traces.rows, sum(sizes.values()))}
    plan |= {t: (traces.rows_per_teacher[t], sizes[t]) for t in inputs.teachers}
    with contextlib.ExitStack() as stack:
        writers = {}
        for name, (count, size) in plan.items():
            writer = ShardWriter(root, name, "train", schema, count, size, shard_max_bytes)
            writers[name] = stack.enter_context(writer)
        for batch in traces.table.arrow_batches():
            if erase_with is not None:
                batch = erase_system_prompt(batch, erase_with)
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
        shards = write_trace_configs(inputs, tmp, cfg.shard_max_bytes, cfg.erased_with)
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
            erased_system_prompt=cfg.erased_with,
        )
        card = render_card(inputs, shards, settings)
        card.save(tmp / "README.md")
    for s in shards:
        logger.info(
            "config %s/%s: %d rows in %d file(s)", s.config_name, s.split, s.num_examples, len(s.files)
        )
    return shards
