"""The dedup stage's tables: the kept prompts streamed to Parquet, the removed rows' schema, and an
earlier release's prompts read for cross-release dedup."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.io import PARQUET_WRITE_OPTS, atomic_path, read_parquet, reading
from dedup.decontam import DedupInputError

logger = logging.getLogger(__name__)


def kept_schema(input_schema: pa.Schema) -> pa.Schema:
    """The input prompt schema plus `cluster_id`."""
    fields = [f for f in input_schema if f.name != "cluster_id"]
    return pa.schema([*fields, pa.field("cluster_id", pa.string(), nullable=False)])


def read_previous(path: str) -> pl.DataFrame:
    """`id` and `question` of an earlier release's prompts."""
    p = Path(path)
    if not p.is_file():
        raise DedupInputError(f"dedup.previous_release: file not found: {p}")
    with reading(p):
        names = pq.read_schema(p).names
    missing = [c for c in ("id", "question") if c not in names]
    if missing:
        raise DedupInputError(f"{p}: previous release lacks column(s) {missing}")
    return read_parquet(p, columns=[c for c in ("id", "question", "task_name") if c in names])


def _batches(path: str, rows: int) -> Iterator[pa.RecordBatch]:
    with reading(path):
        yield from pq.ParquetFile(path).iter_batches(batch_size=rows)


def write_kept(prompts_path: str, keep_ids: pa.Array, target: Path) -> int:
    """Stream the input table in row batches, keeping `keep_ids` and adding `cluster_id`.

    The input is read batch by batch, so only one batch of the table is
    held in memory. Requires the input sorted by id (the prompt table contract).
    """
    schema = kept_schema(pq.read_schema(prompts_path))
    opts = {k: v for k, v in PARQUET_WRITE_OPTS.items() if k != "row_group_size"}
    rows = 0
    with atomic_path(target) as tmp, pq.ParquetWriter(tmp, schema, **opts) as writer:
        for batch in _batches(prompts_path, PARQUET_WRITE_OPTS["row_group_size"]):
            table = pa.Table.from_batches([batch])
            table = table.filter(pc.is_in(table["id"], value_set=keep_ids))
            table = table.drop_columns([c for c in ("cluster_id",) if c in table.column_names])
            table = table.append_column("cluster_id", table["id"]).cast(schema)
            writer.write_table(table, row_group_size=PARQUET_WRITE_OPTS["row_group_size"])
            rows += table.num_rows
    logger.info("wrote %s rows to %s", rows, target)
    return rows
