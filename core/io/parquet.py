"""Parquet tables: one reader (a row group at a time) and one writer (atomic, fixed settings).

Every stage reads its input tables through `ParquetTable` and writes its output tables through
`TableWriter` (or `write_parquet` for a frame held whole): an explicit Arrow schema, one set of
writer settings (`PARQUET_WRITE_OPTS`) and row groups of `ROW_GROUP_ROWS`, so the same rows give
the same bytes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from core.errors import InputError, PipelineError
from core.io.files import atomic_path

logger = logging.getLogger(__name__)

PARQUET_WRITE_OPTS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 3,
    "use_dictionary": True,
    "write_statistics": True,
    "row_group_size": 65536,
}
ROW_GROUP_ROWS: int = PARQUET_WRITE_OPTS["row_group_size"]
BATCH_ROWS = ROW_GROUP_ROWS  # rows per batch of a streaming read (one row group)
_READ_BUFFER = 1 << 20


@contextlib.contextmanager
def reading(path: str | Path, what: str = "Parquet file") -> Iterator[None]:
    """Turn a failure to read `path` inside the block into one `InputError` naming the file."""
    try:
        yield
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found") from None
    except (pa.ArrowException, OSError, pl.exceptions.PolarsError) as exc:
        where = damaged_part(Path(path)) if str(path).endswith(".parquet") else None
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: unreadable {what}{f' ({where})' if where else ''}: {detail}") from None


def damaged_part(path: Path) -> str | None:
    """'row group R, column C' of the first column chunk of a Parquet file that fails to read."""
    try:
        pf = pq.ParquetFile(path)
        for group in range(pf.num_row_groups):
            for column in pf.schema_arrow.names:
                try:
                    pf.read_row_group(group, columns=[column])
                except (pa.ArrowException, OSError):
                    return f"row group {group}, column {column!r}"
    except (pa.ArrowException, OSError):
        return "footer"
    return None


def iter_batches(
    path: str | Path,
    columns: list[str] | None = None,
    rows: int | None = None,
    groups: Iterable[int] | None = None,
) -> Iterator[pa.RecordBatch]:
    """The rows of a Parquet file (or of its row `groups`) in file order, `rows` at a time
    (`ParquetTable(path).arrow_batches`)."""
    return ParquetTable(path).arrow_batches(columns, rows, groups)


def read_parquet(path: str | Path, columns: list[str] | None = None) -> pl.DataFrame:
    """A Parquet file as a frame; a missing or damaged file raises `InputError` naming it."""
    return ParquetTable(path).read(columns)


def plain_strings(
    schema: pa.Schema, extra: Sequence[pa.Field] = (), *, keep_nullable: bool = True
) -> pa.Schema:
    """`schema` with large and view strings as strings (the contract's type; polars reads `string`
    as large strings), followed by the `extra` fields; `keep_nullable=False` makes every field of
    `schema` nullable."""
    columns = []
    for f in schema:
        large = pa.types.is_large_string(f.type) or pa.types.is_string_view(f.type)
        nullable = f.nullable or not keep_nullable
        columns.append(pa.field(f.name, pa.string() if large else f.type, nullable=nullable))
    return pa.schema(columns + list(extra))


class ParquetTable:
    """A Parquet file left on disk, read a row group at a time.

    The footer is read at once (schema, row and row group counts); a missing or damaged file, or a
    missing `required` column, raises `error` naming the file. With `schema`, the frames read are
    cast to its types (the columns it names). `lean` reads pages through a 1 MiB buffer without
    pre-buffering a row group's column chunks: less memory for a long text column, more reads.
    """

    def __init__(
        self,
        path: str | Path,
        schema: pa.Schema | None = None,
        *,
        required: Sequence[str] = (),
        error: type[PipelineError] = InputError,
        lean: bool = False,
    ) -> None:
        self.path = Path(path)
        self.cast_to = schema
        self.lean = lean
        with reading(self.path):
            file = pq.ParquetFile(self.path)
            self.schema: pa.Schema = file.schema_arrow.remove_metadata()
            meta = file.metadata
        self.metadata = meta
        self.num_rows: int = meta.num_rows
        self.num_row_groups: int = meta.num_row_groups
        wanted = dict.fromkeys([*required, *(schema.names if schema is not None else [])])
        missing = [c for c in wanted if c not in self.schema.names]
        if missing:
            raise error(f"{self.path}: missing columns {missing}")

    @property
    def names(self) -> list[str]:
        return list(self.schema.names)

    def _open(self) -> pq.ParquetFile:
        if self.lean:
            return pq.ParquetFile(self.path, pre_buffer=False, buffer_size=_READ_BUFFER)
        return pq.ParquetFile(self.path)

    def arrow_batches(
        self, columns: list[str] | None = None, rows: int | None = None, groups: Iterable[int] | None = None
    ) -> Iterator[pa.RecordBatch]:
        """The rows (of row `groups`) in file order, at most `rows` (`BATCH_ROWS`) at a time, never
        across a row group: pyarrow's `iter_batches` over a whole file reads ahead across row
        groups (about 6 GB held for a 5M-row trace table); over one row group it holds a batch."""
        with reading(self.path):
            parquet = self._open()
            for group in range(parquet.num_row_groups) if groups is None else groups:
                yield from parquet.iter_batches(
                    batch_size=rows or BATCH_ROWS, row_groups=[group], columns=columns
                )

    def batches(
        self, columns: list[str] | None = None, rows: int | None = None, groups: Iterable[int] | None = None
    ) -> Iterator[pl.DataFrame]:
        """`arrow_batches` as polars frames (cast to the table's `schema` when it has one)."""
        for batch in self.arrow_batches(columns, rows, groups):
            yield self._frame(pa.Table.from_batches([batch]))

    def row_group(self, group: int, columns: list[str] | None = None) -> pl.DataFrame:
        """Row group `group` as one frame."""
        with reading(self.path):
            return self._frame(self._open().read_row_group(group, columns=columns))

    def _frame(self, table: pa.Table) -> pl.DataFrame:
        if self.cast_to is not None:
            cast = {f.name: f for f in self.cast_to if f.name in table.column_names}
            table = table.cast(pa.schema([cast.get(f.name, f) for f in table.schema]))
        return pl.from_arrow(table)  # type: ignore[return-value]

    def read(self, columns: list[str] | None = None) -> pl.DataFrame:
        """The whole table (or its `columns`) as one frame: only for what must be held whole."""
        with reading(self.path):
            if self.cast_to is None:
                return pl.read_parquet(self.path, columns=columns)
            return self._frame(pq.read_table(self.path, columns=columns))

    def lazy(self) -> pl.LazyFrame:
        """The table as a lazy frame (nothing is read until it is collected)."""
        return pl.scan_parquet(self.path)

    def null_count(self, column: str) -> int:
        """Nulls in `column`, from the row groups' statistics when every one has them."""
        j = self.schema.get_field_index(column)
        stats = [self.metadata.row_group(i).column(j).statistics for i in range(self.num_row_groups)]
        if all(s is not None and s.has_null_count for s in stats):
            return sum(s.null_count for s in stats)  # type: ignore[union-attr]
        return sum(b.column(0).null_count for b in self.arrow_batches([column]))


def to_arrow(df: pl.DataFrame, schema: pa.Schema) -> pa.Table:
    """Convert `df` to an Arrow table with exactly `schema` (column order, types, nullability)."""
    missing = [f.name for f in schema if f.name not in df.columns]
    if missing:
        raise ValueError(f"frame lacks columns required by the schema: {missing}")
    table = df.select([f.name for f in schema]).to_arrow()
    # polars writes large_string; cast to the declared types so readers see the contract. One chunk
    # per row group: a chunk of `string` holds at most 2 GB of text, and the bytes written do not
    # depend on how polars happened to chunk the frame.
    starts = range(0, table.num_rows, ROW_GROUP_ROWS)
    pieces = [_one_chunk(table.slice(i, ROW_GROUP_ROWS)).cast(schema) for i in starts]
    return pa.concat_tables(pieces) if pieces else table.cast(schema)


def _one_chunk(table: pa.Table) -> pa.Table:
    """`table` as one chunk per column whose buffers start at its first row (a copy of a slice)."""
    columns = [pa.concat_arrays(c.chunks) if c.num_chunks else pa.array([], c.type) for c in table.columns]
    return pa.Table.from_arrays(columns, schema=table.schema)


def parquet_writer(path: str | Path, schema: pa.Schema, long_text: Sequence[str] = ()) -> pq.ParquetWriter:
    """A `pq.ParquetWriter` with the fixed settings; `long_text` columns get no dictionary (a
    dictionary of free text, such as answers, never pays). Write with `row_group_size=ROW_GROUP_ROWS`."""
    opts = {k: v for k, v in PARQUET_WRITE_OPTS.items() if k != "row_group_size"}
    if long_text:
        opts["use_dictionary"] = [n for n in schema.names if n not in long_text]
    return pq.ParquetWriter(path, schema, **opts)


def write_empty(path: str | Path, schema: pa.Schema) -> None:
    """The file of a table with no rows (one empty row group, as `pq.write_table` writes it)."""
    pq.write_table(schema.empty_table(), path, **PARQUET_WRITE_OPTS)


class TableWriter:
    """Rows written to a Parquet file with `schema`, atomically: a context manager whose file is
    renamed into place only if the block succeeds.

    `write` takes a polars frame (converted by `to_arrow`) or an Arrow table or batch (columns
    selected and cast to `schema`). By default each call's rows are row groups of their own (of
    `ROW_GROUP_ROWS` at most; a call with no rows writes an empty row group, as pyarrow does), so a
    stage writing a batch per input row group keeps its layout;
    with `regroup` the rows are cut into row groups of exactly `ROW_GROUP_ROWS` whatever the calls
    (the bytes of `write_parquet` of all the rows), holding one row group. A table with no rows is
    a file without row groups, or with `regroup` `write_empty`'s file (as `write_parquet` writes it).
    """

    def __init__(
        self, path: str | Path, schema: pa.Schema, *, long_text: Sequence[str] = (), regroup: bool = False
    ) -> None:
        self.path, self.schema, self.long_text, self.regroup = Path(path), schema, long_text, regroup
        self.rows = 0
        self._stack = contextlib.ExitStack()
        self._tmp: Path | None = None
        self._writer: pq.ParquetWriter | None = None
        self._buffer: list[pl.DataFrame] = []
        self._buffered = 0

    def __enter__(self) -> TableWriter:
        self._tmp = self._stack.enter_context(atomic_path(self.path))
        if not self.regroup:
            self._open()
        return self

    def _open(self) -> pq.ParquetWriter:
        assert self._tmp is not None, "TableWriter.write outside its `with` block"
        self._writer = self._stack.enter_context(parquet_writer(self._tmp, self.schema, self.long_text))
        return self._writer

    def write(self, rows: pl.DataFrame | pa.Table | pa.RecordBatch) -> None:
        """Append `rows` (in order)."""
        if isinstance(rows, pa.RecordBatch):
            rows = pa.Table.from_batches([rows])
        if not self.regroup:
            self._write(to_arrow(rows, self.schema) if isinstance(rows, pl.DataFrame) else self._cast(rows))
            return
        df = rows if isinstance(rows, pl.DataFrame) else pl.DataFrame(self._cast(rows))
        if df.height:
            self._buffer.append(df)
            self._buffered += df.height
        while self._buffered >= ROW_GROUP_ROWS:
            self._flush(ROW_GROUP_ROWS)

    def _cast(self, table: pa.Table) -> pa.Table:
        return table.select(self.schema.names).cast(self.schema)

    def _flush(self, n: int) -> None:
        df = pl.concat(self._buffer) if len(self._buffer) > 1 else self._buffer[0]
        self._write(to_arrow(df.slice(0, n), self.schema).combine_chunks())
        rest = df.slice(n)
        self._buffer, self._buffered = ([rest], rest.height) if rest.height else ([], 0)

    def _write(self, table: pa.Table) -> None:
        (self._writer or self._open()).write_table(table, row_group_size=ROW_GROUP_ROWS)
        self.rows += table.num_rows

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:  # the temp is removed, nothing renamed
            self._stack.__exit__(exc_type, exc, tb)
            return
        with self._stack:  # closes the writer, then renames the file into place
            if self._buffered:
                self._flush(self._buffered)
            if self._writer is None:
                assert self._tmp is not None
                write_empty(self._tmp, self.schema)
        logger.info("wrote %s rows to %s", self.rows, self.path)


def write_parquet(df: pl.DataFrame, path: str | Path, schema: pa.Schema) -> None:
    """Write `df` to `path` atomically, with an explicit Arrow schema and fixed writer settings."""
    table = to_arrow(df, schema)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **PARQUET_WRITE_OPTS)
    logger.info("wrote %s rows to %s", table.num_rows, path)


def write_parquet_frames(frames: Iterable[pl.DataFrame], path: str | Path, schema: pa.Schema) -> int:
    """Write the rows of `frames`, in order, to `path` atomically, in row groups of exactly
    `ROW_GROUP_ROWS` (the same bytes however the rows are split into frames); returns the row count."""
    with TableWriter(path, schema, regroup=True) as writer:
        for df in frames:
            writer.write(df)
    return writer.rows
