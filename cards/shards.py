"""Write a table as Hub-layout Parquet shards and describe them for the card's `dataset_info`.

Shards are written streaming: rows arrive in batches, in order, and go out in row groups of
`ROW_GROUP_ROWS` rows, so memory holds about one row group per config being written. The number
of shards is fixed before the first row (it is in every file name, `-of-0000n`) by an estimate of
the split's Arrow size (`arrow_size_estimate`) and its row count: `per_shard = ceil(rows / n)` rows
per shard with `n = ceil(estimate / shard_max_bytes)`, the last shard shorter; shards that would
get no rows (a few large rows) are not written, so the count is `ceil(rows / per_shard)`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datasets import Features

from core.io import ROW_GROUP_ROWS, parquet_writer, write_empty

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConfigShards:
    """One config's split, written as shards: what the card's `configs` and `dataset_info` need."""

    config_name: str
    split: str
    files: list[str]  # paths relative to the release root
    num_examples: int
    num_bytes: int  # in-memory Arrow size of the split
    download_size: int  # bytes of the Parquet files
    features: list[dict[str, Any]]

    @property
    def data_glob(self) -> str:
        return f"data/{self.config_name}/{self.split}-*"


def shard_count(num_bytes: int, shard_max_bytes: int) -> int:
    """How many shards keep each under `shard_max_bytes` (by the Arrow size estimate); at least one."""
    return max(1, math.ceil(num_bytes / shard_max_bytes))


def _offset_width(field: pa.Field) -> int:
    """Bytes per offset of a string column (4, or 8 for large strings); 0 for other columns."""
    if pa.types.is_large_string(field.type):
        return 8
    return 4 if pa.types.is_string(field.type) else 0


def _fixed_bytes(schema: pa.Schema, rows: int) -> int:
    """Arrow size of `rows` values of the fixed-width columns (bits packed for booleans)."""
    total = 0
    for field in schema:
        if _offset_width(field):
            continue
        if pa.types.is_boolean(field.type):
            total += (rows + 7) // 8
            continue
        try:
            total += field.type.byte_width * rows
        except ValueError:
            raise ValueError(f"no Arrow size for column {field.name!r} of type {field.type}") from None
    return total


def arrow_size(table: pa.Table) -> int:
    """Arrow size of `table` however its columns are chunked or sliced.

    Values and offsets, plus a validity bitmap for columns with nulls (`Table.nbytes` also counts
    the all-valid bitmaps some readers allocate, so it varies with how the rows were read).
    """
    rows = table.num_rows
    total = _fixed_bytes(table.schema, rows)
    for field, column in zip(table.schema, table.columns, strict=True):
        if _offset_width(field):
            total += _offset_width(field) * (rows + 1) + (pc.sum(pc.binary_length(column)).as_py() or 0)
        if column.null_count:
            total += (rows + 7) // 8
    return total


def arrow_size_estimate(source: pl.LazyFrame, schema: pa.Schema, by: str | None = None) -> dict[Any, int]:
    """Estimated `arrow_size` (bytes) of `source`'s rows per value of column `by` (all rows: key None).

    The string bytes plus their offsets and the fixed-width columns, as `arrow_size` counts them,
    without validity bitmaps: within a few bytes per row group of the `num_bytes` the shards report.
    One streaming aggregation that reads only the string columns (and `by`); nothing is loaded.
    """
    strings = [f for f in schema if _offset_width(f)]
    row_bytes = pl.sum_horizontal([pl.col(f.name).str.len_bytes().cast(pl.Int64) for f in strings])
    aggs = [pl.len().alias("rows"), row_bytes.sum().alias("bytes")]
    query = source.group_by(by).agg(aggs) if by else source.select(pl.lit(None).alias("key"), *aggs)
    sizes = {}
    for key, rows, data in query.collect(engine="streaming").iter_rows():
        offsets = sum(_offset_width(f) for f in strings) * rows
        sizes[key] = int(data or 0) + offsets + _fixed_bytes(schema, rows)
    return sizes


class ShardWriter:
    """Writes one config's split as `data/<config>/<split>-0000k-of-0000n.parquet`, from batches in order.

    `rows` and the size estimate fix the shard count and rows per shard before the first row. Row
    groups of `ROW_GROUP_ROWS` rows start again at every shard's first row, so the bytes depend on the
    rows alone, not on how they were batched. A context manager: leaving it on an error closes any
    open file (the release folder is a temporary one, removed on error).
    """

    def __init__(
        self,
        root: Path,
        config_name: str,
        split: str,
        schema: pa.Schema,
        rows: int,
        estimated_bytes: int,
        shard_max_bytes: int,
    ) -> None:
        self.root, self.schema = root, schema
        self.config_name, self.split, self.rows = config_name, split, rows
        self.per_shard = math.ceil(rows / shard_count(estimated_bytes, shard_max_bytes)) if rows else 0
        n = math.ceil(rows / self.per_shard) if rows else 1  # no shard left without rows
        self.files = [f"data/{config_name}/{split}-{k:05d}-of-{n:05d}.parquet" for k in range(n)]
        (root / "data" / config_name).mkdir(parents=True, exist_ok=True)
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._shard = 0  # index of the shard being written
        self._in_shard = 0  # rows already in it
        self._writer: pq.ParquetWriter | None = None
        self._written = 0
        self._nbytes = 0

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._close_file()

    def _group_rows(self) -> int:
        """Rows of the row group being filled: a full one or the rest of the shard (0 past the last)."""
        if self._shard == len(self.files):
            return 0
        return min(ROW_GROUP_ROWS, self.per_shard - self._in_shard)

    def write(self, batch: pa.RecordBatch) -> None:
        """Add the next rows (columns named as in the schema); full row groups are written at once."""
        while batch.num_rows:
            take = min(self._group_rows() - self._pending_rows, batch.num_rows)
            if take <= 0:
                raise ValueError(f"config {self.config_name}: more rows than the {self.rows} announced")
            self._pending.append(batch.slice(0, take))
            self._pending_rows += take
            batch = batch.slice(take)
            if self._pending_rows == self._group_rows():
                self._flush()

    def _flush(self) -> None:
        """Write the pending rows as one row group of the current shard; close it when full."""
        table = pa.Table.from_batches(self._pending).select(self.schema.names).cast(self.schema)
        table = table.combine_chunks()
        if self._writer is None:
            self._writer = parquet_writer(self.root / self.files[self._shard], self.schema)
        self._writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        self._nbytes += arrow_size(table)
        self._in_shard += table.num_rows
        self._written += table.num_rows
        self._pending, self._pending_rows = [], 0
        if self._in_shard == self.per_shard:
            self._close_file()

    def _close_file(self) -> None:
        """Close the open shard, if any; the next rows go to the next shard."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            logger.info("wrote %d rows to %s", self._in_shard, self.files[self._shard])
            self._shard += 1
            self._in_shard = 0

    def finish(self) -> ConfigShards:
        """Write what is pending and any shard left without rows; describe the split."""
        if self._pending_rows:
            self._flush()
        if self._written != self.rows:
            raise ValueError(f"config {self.config_name}: {self._written} rows, {self.rows} announced")
        self._close_file()
        if self.rows == 0:  # an empty split is one file with no rows
            write_empty(self.root / self.files[0], self.schema)
        return ConfigShards(
            config_name=self.config_name,
            split=self.split,
            files=self.files,
            num_examples=self._written,
            num_bytes=self._nbytes,
            download_size=sum((self.root / f).stat().st_size for f in self.files),
            features=Features.from_arrow_schema(self.schema)._to_yaml_list(),
        )


def write_shards(
    batches: Iterable[pa.RecordBatch],
    schema: pa.Schema,
    root: Path,
    config_name: str,
    split: str,
    shard_max_bytes: int,
    rows: int,
    estimated_bytes: int,
) -> ConfigShards:
    """Write `batches` (sorted rows, `rows` in all) as one config's shards under `root`."""
    with ShardWriter(root, config_name, split, schema, rows, estimated_bytes, shard_max_bytes) as writer:
        for batch in batches:
            writer.write(batch)
        return writer.finish()
