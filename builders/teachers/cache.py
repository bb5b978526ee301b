"""The generation cache: completed generations in atomically written Parquet files.

It lives outside the stage's DVC outs (a `persist: true` folder), so DVC's deletion of outs before a
run does not touch it. A generation is keyed by sha256 of (prompt id, system prompt, question,
teacher model, resolved revision, sampling params) (`builders.teachers.keys`); a prompt whose key is
present is never sent again.

A run writes small `part-*.parquet` shards as answers arrive; `compact` merges them into
`pack-*.parquet` files of about `pack_bytes` (a 5M-prompt run leaves tens of files, not twenty
thousand). Every file is written under a temp name, fsynced and renamed, and compaction deletes its
inputs only after the pack is in place, so a kill at any moment leaves each generation in at least
one file; a key found twice (a kill between rename and delete, or two runs racing) is read once,
from the first file in name order. Rows of every file are sorted by prompt id, so a reader of an id
range skips the row groups outside it by their statistics.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from builders.teachers.base import GenResult
from core.io import remove_stale_temps
from core.schema import fields

logger = logging.getLogger(__name__)

CACHE_SCHEMA = pa.schema(
    fields(
        "key id teacher_model model_revision response finish_reason prompt_tokens:int32"
        " completion_tokens:int32"
    )
)
CACHE_ROW_GROUP = 8192  # rows; the granularity at which an id-range read skips data
PACK_BYTES = 256_000_000


class GenerationCache:
    """A folder of `part-*` shards and `pack-*` compacted files of completed generations."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.root, ".part")  # files a killed writer never finished
        remove_stale_temps(self.root, ".pack")
        self._seq = 0

    def shards(self) -> list[Path]:
        """Every cache file, packs and parts, in name order (the order duplicates are resolved in)."""
        return sorted([*self.root.glob("pack-*.parquet"), *self.root.glob("part-*.parquet")])

    def _scan(self) -> pl.LazyFrame | None:
        files = self.shards()
        return pl.scan_parquet([str(p) for p in files]) if files else None

    def _empty(self) -> pl.DataFrame:
        return pl.DataFrame(schema=pl.from_arrow(CACHE_SCHEMA.empty_table()).schema)

    def keys(self) -> pl.Series:
        """Every cached key, once (reads only the key column)."""
        lf = self._scan()
        if lf is None:
            return pl.Series("key", [], dtype=pl.String)
        return lf.select(pl.col("key").unique()).collect()["key"]

    def load(self, keys: Iterable[str] | None = None) -> pl.DataFrame:
        """All cached rows (or those with `keys`), one per key."""
        lf = self._scan()
        if lf is None:
            return self._empty()
        if keys is not None:
            lf = lf.filter(pl.col("key").is_in(pl.Series(list(keys), dtype=pl.String)))
        return lf.collect().unique(subset="key", keep="first", maintain_order=True)

    def lookup(self, keys: pl.Series, first_id: str, last_id: str) -> pl.DataFrame:
        """Cached rows with `keys`, one per key, whose prompt ids lie in [first_id, last_id]."""
        lf = self._scan()
        if lf is None or keys.is_empty():
            return self._empty()
        lf = lf.filter(
            pl.col("id").is_between(pl.lit(first_id), pl.lit(last_id)) & pl.col("key").is_in(keys.implode())
        )
        return lf.collect().unique(subset="key", keep="first", maintain_order=True)

    def _name(self, kind: str) -> str:
        self._seq += 1
        return f"{kind}-{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}.parquet"

    def _write(self, table: pa.Table, kind: str) -> Path:
        target = self.root / self._name(kind)
        tmp = self.root / f".{kind}.{os.getpid()}.{target.name}.tmp"
        with open(tmp, "wb") as fh:
            pq.write_table(table, fh, compression="zstd", row_group_size=CACHE_ROW_GROUP)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        _fsync_dir(self.root)
        return target

    def write_shard(self, results: list[GenResult], model: str, revision: str) -> Path | None:
        """Write completed generations as one new shard, atomically."""
        if not results:
            return None
        table = pa.table(
            {
                "key": [r.key for r in results],
                "id": [r.id for r in results],
                "teacher_model": [model] * len(results),
                "model_revision": [revision] * len(results),
                "response": [r.response for r in results],
                "finish_reason": [r.finish_reason for r in results],
                "prompt_tokens": [r.prompt_tokens for r in results],
                "completion_tokens": [r.completion_tokens for r in results],
            },
            schema=CACHE_SCHEMA,
        )
        return self._write(table.sort_by([("id", "ascending"), ("key", "ascending")]), "part")

    def small_files(self, pack_bytes: int) -> list[Path]:
        """Parts, and packs under a quarter of `pack_bytes`: what `compact` would merge."""
        return [p for p in self.shards() if p.name.startswith("part-") or p.stat().st_size < pack_bytes // 4]

    def compact(self, pack_bytes: int = PACK_BYTES) -> int:
        """Merge the small files into packs of about `pack_bytes`; returns the files merged.

        Each pack is written and renamed before its inputs are deleted: a kill leaves every
        generation in a pack, in its part, or in both (read once).
        """
        small = self.small_files(pack_bytes)
        if len(small) < 2:
            return 0
        groups: list[list[Path]] = [[]]
        size = 0
        for p in small:
            n = p.stat().st_size
            if groups[-1] and size + n > pack_bytes:
                groups.append([])
                size = 0
            groups[-1].append(p)
            size += n
        merged = 0
        for group in groups:
            if len(group) < 2:
                continue
            table = (
                pl.scan_parquet([str(p) for p in group])
                .unique(subset="key", keep="first", maintain_order=True)
                .sort("id", "key")
                .collect()
                .to_arrow()
                .cast(CACHE_SCHEMA)
            )
            self._write(table, "pack")
            for p in group:
                p.unlink()
            merged += len(group)
        _fsync_dir(self.root)
        logger.info("generation cache: merged %d files; %d files now", merged, len(self.shards()))
        return merged


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
