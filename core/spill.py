"""Rows spilled to disk under keys, to be read back one key at a time (an external partition).

A stage whose output must be ordered but is larger than memory writes its rows here as they come,
each under a key (an id prefix, a bucket of tasks), then reads back one key's rows at a time in
the order it needs. Each key is one Parquet file, appended to a row group per `add`; nothing but
the open writers is held in memory.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

_SAFE = re.compile(r"^[A-Za-z0-9_.-]+$")


class Spill:
    """A folder of one Parquet file per key (`<key>.parquet`); keys are file-name safe strings."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._writers: dict[str, pq.ParquetWriter] = {}

    def add(self, df: pl.DataFrame, key: str) -> None:
        """Append `df`'s rows under `key`."""
        if df.height == 0:
            return
        if not _SAFE.match(key):
            raise ValueError(f"spill key {key!r} is not a safe file name")
        table = df.to_arrow()
        writer = self._writers.get(key)
        if writer is None:
            writer = pq.ParquetWriter(self.root / f"{key}.parquet", table.schema, compression="zstd",
                                      compression_level=1)  # fmt: skip
            self._writers[key] = writer
        writer.write_table(table.cast(writer.schema))

    def add_by(self, df: pl.DataFrame, column: str) -> None:
        """Append each row under the key in its `column` (the column is not stored)."""
        for (key,), part in df.partition_by(column, as_dict=True, include_key=False).items():
            self.add(part, str(key))

    def close(self) -> None:
        """Finish every open file (reading a key closes the writers first)."""
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()

    def stored(self) -> list[str]:
        """Every key with rows, sorted."""
        self.close()
        return sorted(p.name.removesuffix(".parquet") for p in self.root.glob("*.parquet"))

    def read(self, key: str, columns: list[str] | None = None) -> pl.DataFrame:
        """The rows added under `key`, in the order they were added."""
        self.close()
        return pl.from_arrow(pq.read_table(self.root / f"{key}.parquet", columns=columns))  # type: ignore[return-value]


def read_key(roots: list[Path], key: str, columns: list[str] | None = None) -> pa.Table | None:
    """The rows under `key` in every spill folder of `roots` that has it, concatenated (None if none)."""
    files = [r / f"{key}.parquet" for r in roots if (r / f"{key}.parquet").exists()]
    if not files:
        return None
    return pa.concat_tables([pq.read_table(f, columns=columns) for f in files])
