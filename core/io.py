"""Atomic, deterministic outputs shared by every stage.

A stage writes each output to a temporary name beside its target and renames it into place,
so an interrupted or failed run leaves no partial file. Parquet files are written with an
explicit schema and fixed writer settings, so the same rows give the same bytes.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from core import inputs
from core.errors import InputError, PipelineError

logger = logging.getLogger(__name__)

PARQUET_WRITE_OPTS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 3,
    "use_dictionary": True,
    "write_statistics": True,
    "row_group_size": 65536,
}


def remove_path(path: Path) -> None:
    """Delete a file, link or folder tree if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(folder: Path, prefix: str) -> list[Path]:
    """Remove `<prefix>.<pid>.*.tmp` files and folders in `folder` whose writer is gone; return them.

    A writer killed mid-write (`kill -9`) leaves its temp behind; the next writer cleans it up.
    Temps of a live process (another writer of the same folder) are left alone.
    """
    removed = []
    for tmp in sorted(folder.glob(f"{glob.escape(prefix)}.*.tmp")):
        pid = tmp.name[len(prefix) + 1 :].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue
        remove_path(tmp)
        removed.append(tmp)
    if removed:
        logger.info(
            "removed %d stale temp path(s) in %s: %s", len(removed), folder, [p.name for p in removed]
        )
    return removed


@contextlib.contextmanager
def atomic_path(target: str | Path, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds.

    The temp is `.<name>.<pid>.<random>.tmp` in `target`'s folder; temps of killed writers of the
    same target are removed first.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target.parent, f".{target.name}")
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent))
    work = tmp if is_dir else tmp / target.name
    try:
        yield work
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        inputs.before_write(target)
        os.replace(work, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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


BATCH_ROWS = 65_536  # rows per batch of a streaming read (one PARQUET_WRITE_OPTS row group)


def iter_batches(
    path: str | Path,
    columns: list[str] | None = None,
    rows: int = BATCH_ROWS,
    groups: Iterable[int] | None = None,
) -> Iterator[pa.RecordBatch]:
    """The rows of a Parquet file (or of its row `groups`) in file order, `rows` at a time; a read
    failure names the file.

    One row group at a time: pyarrow's `iter_batches` over a whole file reads ahead across row
    groups (about 6 GB held for a 5M-row trace table); over one row group it holds about a batch.
    """
    with reading(path):
        parquet = pq.ParquetFile(path)
        for group in range(parquet.num_row_groups) if groups is None else groups:
            yield from parquet.iter_batches(batch_size=rows, row_groups=[group], columns=columns)


def read_parquet(path: str | Path, columns: list[str] | None = None) -> pl.DataFrame:
    """A Parquet file as a frame; a missing or damaged file raises `InputError` naming it."""
    with reading(path):
        return pl.read_parquet(path, columns=columns)


def to_arrow(df: pl.DataFrame, schema: pa.Schema) -> pa.Table:
    """Convert `df` to an Arrow table with exactly `schema` (column order, types, nullability)."""
    missing = [f.name for f in schema if f.name not in df.columns]
    if missing:
        raise ValueError(f"frame lacks columns required by the schema: {missing}")
    table = df.select([f.name for f in schema]).to_arrow()
    # polars writes large_string; cast to the declared types so readers see the contract. One chunk
    # per row group: a chunk of `string` holds at most 2 GB of text, and the bytes written do not
    # depend on how polars happened to chunk the frame.
    group = PARQUET_WRITE_OPTS["row_group_size"]
    pieces = [_one_chunk(table.slice(i, group)).cast(schema) for i in range(0, table.num_rows, group)]
    return pa.concat_tables(pieces) if pieces else table.cast(schema)


def _one_chunk(table: pa.Table) -> pa.Table:
    """`table` as one chunk per column whose buffers start at its first row (a copy of a slice)."""
    columns = [pa.concat_arrays(c.chunks) if c.num_chunks else pa.array([], c.type) for c in table.columns]
    return pa.Table.from_arrays(columns, schema=table.schema)


def write_parquet(df: pl.DataFrame, path: str | Path, schema: pa.Schema) -> None:
    """Write `df` to `path` atomically, with an explicit Arrow schema and fixed writer settings."""
    table = to_arrow(df, schema)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **PARQUET_WRITE_OPTS)
    logger.info("wrote %s rows to %s", table.num_rows, path)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader refusing a key given twice in one mapping (as DVC does)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool | None):
                continue  # an unhashable key: the base loader names it
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    """Parse YAML like `yaml.safe_load`, refusing duplicate keys."""
    return yaml.load(text, Loader=_UniqueKeyLoader)


def write_parquet_frames(frames: Iterable[pl.DataFrame], path: str | Path, schema: pa.Schema) -> int:
    """Write the rows of `frames`, in order, to `path` atomically; returns the row count.

    The same bytes as `write_parquet` of the frames concatenated: rows are cut into row groups of
    exactly `PARQUET_WRITE_OPTS["row_group_size"]`, each written as one chunk, so memory holds one
    row group whatever the file's size.
    """
    group = PARQUET_WRITE_OPTS["row_group_size"]
    opts = {k: v for k, v in PARQUET_WRITE_OPTS.items() if k != "row_group_size"}
    rows = 0
    with atomic_path(path) as tmp:
        writer: pq.ParquetWriter | None = None
        buffer: list[pl.DataFrame] = []
        buffered = 0

        def flush(n: int) -> None:
            nonlocal writer, buffer, buffered
            df = pl.concat(buffer) if len(buffer) > 1 else buffer[0]
            table = to_arrow(df.slice(0, n), schema).combine_chunks()
            if writer is None:
                writer = pq.ParquetWriter(tmp, schema, **opts)
            writer.write_table(table, row_group_size=group)
            rest = df.slice(n)
            buffer, buffered = ([rest], rest.height) if rest.height else ([], 0)

        try:
            for df in frames:
                if df.height:
                    buffer.append(df)
                    buffered += df.height
                    rows += df.height
                while buffered >= group:
                    flush(group)
            if buffered:
                flush(buffered)
        finally:
            if writer is not None:
                writer.close()
        if writer is None:  # no rows: the file write_parquet writes for an empty frame
            pq.write_table(schema.empty_table(), tmp, **PARQUET_WRITE_OPTS)
    logger.info("wrote %s rows to %s", rows, path)
    return rows


def read_document(path: str | Path, *, what: str = "file", error: type[PipelineError] = InputError) -> Any:
    """Parse a JSON (`.json`) or YAML file; a missing, non-UTF-8 or malformed file raises `error` naming it.

    Within a stage run the file is read once (`core.inputs`): every later read gets the same text.
    """
    path = Path(path)
    try:
        text = inputs.read_bytes(path).decode("utf-8")
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise error(f"{path}: {what} is a folder, not a file") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: {what} is not UTF-8 text (byte {exc.start})") from None
    is_json = path.suffix == ".json"
    try:
        return json.loads(text) if is_json else load_yaml(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise error(f"{path}: not valid {'JSON' if is_json else 'YAML'}: {_parse_error(exc)}") from None


def _parse_error(exc: Exception) -> str:
    """A parser's complaint on one line, with the line and column it points at."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"{exc.problem or exc.context} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(exc).split())


def file_md5(path: str | Path) -> str:
    """The md5 of a file's bytes, as DVC records it in dvc.lock."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "md5").hexdigest()


def write_json(obj: Any, path: str | Path) -> None:
    """Write `obj` as sorted, indented JSON atomically (DVC metrics, summaries, meta files)."""
    text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_text(text: str, path: str | Path) -> None:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
