"""The rows the dedup stage reads: ids and task codes in memory, question texts streamed.

A corpus is a Parquet file (the stage) or a polars frame (tests, benchmarks). Only `id` and the
task code of each row are held; questions are read in row batches when a pass needs them, so the
stage's memory does not hold the corpus text.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from core.io import ParquetTable
from dedup.decontam import DedupInputError

TASK_COLUMN = "task_name"
TYPE_COLUMN = "template_type"
T = TypeVar("T")
_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6") if sys.platform == "linux" else None


def release_free_memory() -> None:
    """Hand freed pages back to the OS: Arrow's pool and glibc's arenas (where worker threads'
    frees land) otherwise keep them."""
    pa.default_memory_pool().release_unused()
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)


_BATCH_ROWS = 65536
ONE_PASS_ROWS = 1 << 18  # rows a pass may gather texts or word multisets of all at once


def _read_ahead(items: Generator[T, None, None]) -> Iterator[T]:
    """`items`, each next one fetched in a thread while the caller works on the one before (a
    Parquet batch decodes beside the work on the previous batch; one batch more is held)."""
    done = object()
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dedup-read") as pool:
            ahead = pool.submit(next, items, done)
            while (item := ahead.result()) is not done:
                ahead = pool.submit(next, items, done)
                yield item
    finally:
        items.close()  # after the pool has finished with it (closed early, or failed)


def _task_codes(tasks: pl.Series | None, n: int) -> tuple[np.ndarray, list[str]]:
    if tasks is None:
        return np.zeros(n, dtype=np.int64), [""]
    tasks = tasks.fill_null("")
    names = tasks.unique().sort()
    codes = tasks.rank("dense").cast(pl.Int64).to_numpy() - 1
    return codes, names.to_list()


def _type_codes(types: pl.Series | None, n: int) -> np.ndarray:
    """A small code per FLAN template type (zs_opt, zs_noopt, ...): the same example under two
    template types is a template variant, never a near duplicate."""
    if types is None:
        return np.zeros(n, dtype=np.int8)
    return (types.fill_null("").rank("dense").cast(pl.Int16).to_numpy() - 1).astype(np.int8)


@dataclass
class Corpus:
    """`id`, task code and template-type code per row (sorted by id); questions from `frame` or
    the Parquet `table`."""

    ids: pl.Series
    task: np.ndarray  # int64 code per row, indexing `task_names`
    task_names: list[str]
    source: str
    table: ParquetTable | None = None
    frame: pl.DataFrame | None = None
    template_type: np.ndarray | None = None  # int8 code per row (zeros when the input has none)

    def __post_init__(self) -> None:
        if self.template_type is None:
            self.template_type = np.zeros(self.n, dtype=np.int8)

    @property
    def n(self) -> int:
        return self.ids.len()

    @classmethod
    def from_frame(cls, df: pl.DataFrame, source: str = "prompts") -> Corpus:
        """A corpus over an in-memory frame with `id`, `question` and optionally `task_name` and
        `template_type`."""
        task, names = _task_codes(df[TASK_COLUMN] if TASK_COLUMN in df.columns else None, df.height)
        types = _type_codes(df[TYPE_COLUMN] if TYPE_COLUMN in df.columns else None, df.height)
        return cls(df["id"], task, names, source, frame=df.select("question"), template_type=types)

    @classmethod
    def from_parquet(cls, path: str | Path) -> Corpus:
        """A corpus over a Parquet prompt table (reads `id`, `task_name` and `template_type` now,
        questions later). Pages are read without pre-buffering a row group's column chunks, so the
        question text of a whole row group is not held beside the batch."""
        table = ParquetTable(path, required=("id", "question"), error=DedupInputError, lean=True)
        has_task = TASK_COLUMN in table.names
        ids: list[pa.Array] = []
        codes: list[np.ndarray] = []
        index: dict[str, int] = {}  # task name -> code in order of first appearance
        # batch by batch, so only the ids and one code per row stay (not the task name strings)
        for batch in table.arrow_batches(["id", *([TASK_COLUMN] if has_task else [])], _BATCH_ROWS):
            ids.append(batch.column(0))
            if has_task:
                enc = pc.dictionary_encode(batch.column(1).fill_null(""))
                local = np.array([index.setdefault(t, len(index)) for t in enc.dictionary.to_pylist()])
                codes.append(local[enc.indices.to_numpy()] if len(local) else np.empty(0, np.int64))
        id_series = pl.Series("id", pa.concat_arrays(ids)) if ids else pl.Series("id", [], dtype=pl.String)
        del ids
        release_free_memory()
        types = None
        if TYPE_COLUMN in table.names:
            types = _type_codes(table.read([TYPE_COLUMN])[TYPE_COLUMN], id_series.len())
        source = str(table.path)
        if not has_task:
            zeros = np.zeros(id_series.len(), np.int64)
            return cls(id_series, zeros, [""], source, table=table, template_type=types)
        task_names = sorted(index)
        rank = np.empty(len(index), dtype=np.int64)
        rank[[index[t] for t in task_names]] = np.arange(len(index))
        task = rank[np.concatenate(codes)] if codes else np.empty(0, np.int64)
        return cls(id_series, task, task_names, source, table=table, template_type=types)

    def arrow_batches(self, rows: int = _BATCH_ROWS) -> Iterator[tuple[int, pa.Array]]:
        """(first row, questions as an Arrow string array) for consecutive row batches."""
        if self.frame is not None:
            for lo in range(0, self.n, rows):
                yield lo, self.frame["question"].slice(lo, rows).to_arrow()
            return
        yield from _read_ahead(self._parquet_batches(rows))

    def _parquet_batches(self, rows: int) -> Generator[tuple[int, pa.Array], None, None]:
        assert self.table is not None
        lo = 0
        for batch in self.table.arrow_batches(["question"], rows):
            yield lo, batch.column(0)
            lo += batch.num_rows
            release_free_memory()

    def texts(self, *orders: np.ndarray) -> list[pa.Array]:
        """Questions of the rows of each order (any order, repeats allowed), as Arrow arrays.

        Each distinct row's text is copied out of its batch once, then put in the asked order, so
        the results hold only these texts. Orders that together name more than `ONE_PASS_ROWS`
        distinct rows are fetched one pass each, so their shared texts are never held beside them.
        """
        orders = tuple(np.asarray(o, dtype=np.int64) for o in orders)
        if len(orders) > 1 and len(np.unique(np.concatenate(orders))) > ONE_PASS_ROWS:
            return [self.texts(o)[0] for o in orders]
        distinct = np.unique(np.concatenate(orders)) if orders else np.empty(0, np.int64)
        if self.frame is not None:
            found = self.frame["question"].gather(distinct).to_arrow().cast(pa.large_string())
        else:
            parts = []
            for lo, qs in self.arrow_batches():
                a, b = np.searchsorted(distinct, [lo, lo + len(qs)])
                if b > a:
                    parts.append(qs.take(distinct[a:b] - lo).cast(pa.large_string()))
            found = pa.concat_arrays(parts) if parts else pa.array([], pa.large_string())
            del parts
        out = [found.take(np.searchsorted(distinct, o)) for o in orders]
        del found
        release_free_memory()
        return out
