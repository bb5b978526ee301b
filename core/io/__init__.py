"""Atomic, deterministic I/O shared by every stage: files and documents (`core.io.files`) and
Parquet tables (`core.io.parquet`: `ParquetTable` to read, `TableWriter` to write)."""

from core.io.files import (
    atomic_path,
    file_md5,
    read_document,
    remove_stale_temps,
    write_json,
    write_text,
)
from core.io.parquet import (
    BATCH_ROWS,
    PARQUET_WRITE_OPTS,
    ROW_GROUP_ROWS,
    ParquetTable,
    TableWriter,
    iter_batches,
    parquet_writer,
    plain_strings,
    read_parquet,
    reading,
    to_arrow,
    write_empty,
    write_parquet,
    write_parquet_frames,
)

__all__ = [
    "BATCH_ROWS",
    "PARQUET_WRITE_OPTS",
    "ROW_GROUP_ROWS",
    "ParquetTable",
    "TableWriter",
    "atomic_path",
    "file_md5",
    "iter_batches",
    "parquet_writer",
    "plain_strings",
    "read_document",
    "read_parquet",
    "reading",
    "remove_stale_temps",
    "to_arrow",
    "write_empty",
    "write_json",
    "write_parquet",
    "write_parquet_frames",
    "write_text",
]
