"""The dedup stage's tables: the kept prompts streamed to Parquet, the removed rows' schema, and an
earlier release's prompts read for cross-release dedup."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from core.io import ParquetTable, TableWriter
from dedup.decontam import DedupInputError


def kept_schema(input_schema: pa.Schema) -> pa.Schema:
    """The input prompt schema plus `cluster_id`."""
    fields = [f for f in input_schema if f.name != "cluster_id"]
    return pa.schema([*fields, pa.field("cluster_id", pa.string(), nullable=False)])


def read_previous(path: str) -> pl.DataFrame:
    """`id` and `question` of an earlier release's prompts."""
    p = Path(path)
    if not p.is_file():
        raise DedupInputError(f"dedup.previous_release: file not found: {p}")
    table = ParquetTable(p, error=DedupInputError)
    missing = [c for c in ("id", "question") if c not in table.names]
    if missing:
        raise DedupInputError(f"{p}: previous release lacks column(s) {missing}")
    return table.read([c for c in ("id", "question", "task_name") if c in table.names])


def write_kept(prompts_path: str, keep_ids: pa.Array, target: Path) -> int:
    """Stream the input table a row group at a time, keeping `keep_ids` and adding `cluster_id`.

    Only one row group of the table is held in memory. Requires the input sorted by id (the prompt
    table contract).
    """
    source = ParquetTable(prompts_path)
    with TableWriter(target, kept_schema(source.schema)) as writer:
        for batch in source.arrow_batches():
            table = pa.Table.from_batches([batch])
            table = table.filter(pc.is_in(table["id"], value_set=keep_ids))
            table = table.drop_columns([c for c in ("cluster_id",) if c in table.column_names])
            writer.write(table.append_column("cluster_id", table["id"]))
    return writer.rows
