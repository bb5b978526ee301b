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

from cards.card import FUNNEL_PNG, render_card
from cards.config import ReleaseConfig
from cards.funnel import funnel_chart
from cards.hub import PublishConfig
from cards.inputs import ReleaseInputError, ReleaseInputs
from cards.shards import ConfigShards, ShardWriter, arrow_size_estimate, write_shards
from core.io import atomic_path, reading, to_arrow

logger = logging.getLogger(__name__)

RESERVED_CONFIGS = ("default", "heldout")
ORIGINAL_SYSTEM_PROMPT = "original_system_prompt"


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
        card = render_card(inputs, shards, cfg, pub)
        card.save(tmp / "README.md")
    for s in shards:
        logger.info(
            "config %s/%s: %d rows in %d file(s)", s.config_name, s.split, s.num_examples, len(s.files)
        )
    return shards
