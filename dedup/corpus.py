"""The rows the dedup stage reads: ids and task codes in memory, question texts streamed.

A corpus is a Parquet file (the stage) or a polars frame (tests, benchmarks). Only `id` and the
task code of each row are held; questions are read in row batches when a pass needs them, so the
stage's memory does not hold the corpus text.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from dedup.decontam import DedupInputError

TASK_COLUMN = "task_name"
_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6") if sys.platform == "linux" else None


def release_free_memory() -> None:
    """Hand freed heap pages back to the OS (glibc keeps what worker threads freed in its arenas)."""
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)


_BATCH_ROWS = 65536


def _task_codes(tasks: pl.Series | None, n: int) -> tuple[np.ndarray, list[str]]:
    if tasks is None:
        return np.zeros(n, dtype=np.int64), [""]
    tasks = tasks.fill_null("")
    names = tasks.unique().sort()
    codes = tasks.rank("dense").cast(pl.Int64).to_numpy() - 1
    return codes, names.to_list()


@dataclass
class Corpus:
    """`id` and task code per row (sorted by id); questions from `frame` or the Parquet `path`."""

    ids: pl.Series
    task: np.ndarray  # int64 code per row, indexing `task_names`
    task_names: list[str]
    source: str
    path: Path | None = None
    frame: pl.DataFrame | None = None

    @property
    def n(self) -> int:
        return self.ids.len()

    @classmethod
    def from_frame(cls, df: pl.DataFrame, source: str = "prompts") -> Corpus:
        """A corpus over an in-memory frame with `id`, `question` and optionally `task_name`."""
        task, names = _task_codes(df[TASK_COLUMN] if TASK_COLUMN in df.columns else None, df.height)
        return cls(df["id"], task, names, source, frame=df.select("question"))

    @classmethod
    def from_parquet(cls, path: str | Path) -> Corpus:
        """A corpus over a Parquet prompt table (reads `id` and `task_name` now, questions later)."""
        path = Path(path)
        names = pq.read_schema(path).names
        missing = [c for c in ("id", "question") if c not in names]
        if missing:
            raise DedupInputError(f"{path}: missing column(s) {missing}")
        cols = ["id", *([TASK_COLUMN] if TASK_COLUMN in names else [])]
        head = pl.read_parquet(path, columns=cols)
        task, task_names = _task_codes(head[TASK_COLUMN] if TASK_COLUMN in cols else None, head.height)
        return cls(head["id"], task, task_names, str(path), path=path)

    def arrow_batches(self, rows: int = _BATCH_ROWS) -> Iterator[tuple[int, pa.Array]]:
        """(first row, questions as an Arrow string array) for consecutive row batches."""
        if self.frame is not None:
            for lo in range(0, self.n, rows):
                yield lo, self.frame["question"].slice(lo, rows).to_arrow()
            return
        lo = 0
        for batch in pq.ParquetFile(self.path or self.source).iter_batches(
            batch_size=rows, columns=["question"]
        ):
            yield lo, batch.column(0)
            lo += batch.num_rows
            release_free_memory()

    def batches(self, rows: int = _BATCH_ROWS) -> Iterator[tuple[int, pl.Series]]:
        """(first row, questions) for consecutive row batches."""
        for lo, arr in self.arrow_batches(rows):
            yield lo, pl.Series("question", arr)

    def texts(self, rows: np.ndarray) -> pl.Series:
        """Questions of `rows` (sorted, distinct), in that order.

        Taken from each Arrow batch as copies, so the result holds only these texts (a polars
        gather would keep views into every batch it touched).
        """
        rows = np.asarray(rows, dtype=np.int64)
        if self.frame is not None:
            return self.frame["question"].gather(rows)
        parts = []
        for lo, qs in self.arrow_batches():
            a, b = np.searchsorted(rows, [lo, lo + len(qs)])
            if b > a:
                parts.append(qs.take(rows[a:b] - lo))
        if not parts:
            return pl.Series("question", [], dtype=pl.String)
        return pl.Series("question", pa.concat_arrays(parts))
