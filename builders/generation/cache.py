"""The generation cache: completed generations in atomically written Parquet files.

It is a `persist: true` out of its stage (DVC does not delete it before a run) that DVC caches, so
`dvc push` and `dvc pull` carry it to other machines. A generation is keyed by sha256 of (prompt
id, system prompt, question, teacher model, resolved revision, sampling params)
(`builders.generation.keys`); a prompt whose key is present is never sent again.

A run writes small `part-*.parquet` shards as answers arrive; `compact` merges them into
`pack-*.parquet` files of about `pack_bytes` (a 5M-prompt run leaves tens of files, not twenty
thousand). Every file is written under a temp name, fsynced and renamed, and compaction deletes its
inputs only after the pack is in place, so a kill at any moment leaves each generation in at least
one file; a key found twice (a kill between rename and delete, or two runs racing) is read once,
from the first file in name order. Rows of every file are sorted by prompt id, so a reader of an id
range skips the row groups outside it by their statistics.

A file is named `<kind>-<seq>-<sha256 of its bytes>.parquet` and read in `seq` order: a part takes
the next number, a pack the smallest of the files it merges, so the first-written row of a key
keeps winning. Nothing in a name depends on time or process, and the end of a run packs even a lone
part, so one run from an empty cache leaves the same files on every machine (the same dvc.lock entry).

One writer at a time: a run that writes (`lock=True`) holds the folder's OS lock
(`core.folderlock`, the file `.writer.lock`, which .dvcignore keeps out of the DVC out); a second
writer waits for it (up to `LOCK_WAIT_S`), then stops with one line naming the holder.

A damaged file (a pack truncated by a full disk or a bad copy) is named and set aside: a writer
checks every file's footer as it opens the cache, and a read that fails finds the file it failed
on; the file moves to `.quarantine/` (also kept out of the DVC out) with one warning line, and its
answers are asked again only if no other file holds them. When DVC's cache holds the file's good
copy, the run stops instead, with one line saying how to put it back (`dvc checkout`), so nothing
is paid twice.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from builders.generation.base import GenResult
from core import dvcstore, folderlock
from core.errors import InputError, PipelineError
from core.io import remove_stale_temps
from core.schema import fields

logger = logging.getLogger(__name__)

CACHE_SCHEMA = pa.schema(
    fields(
        "key id teacher_model model_revision response finish_reason prompt_tokens:int32"
        " completion_tokens:int32 served_model?"
    )
)  # served_model: the model the server named (null: not reported, or written before it was recorded)
CACHE_ROW_GROUP = 8192  # rows; the granularity at which an id-range read skips data
PACK_BYTES = 256_000_000
LOCK_WAIT_S = 300.0  # a second writer waits this long for the first (a killed run finishing its drain)
QUARANTINE = ".quarantine"  # damaged files are moved here
READ_ERRORS = (pa.ArrowException, OSError, pl.exceptions.PolarsError)
T = TypeVar("T")


class CacheDamaged(PipelineError):
    """A damaged cache file whose good copy DVC holds: put it back rather than pay for it again."""


class GenerationCache:
    """A folder of `part-*` shards and `pack-*` compacted files of completed generations."""

    def __init__(self, root: str | Path, *, lock: bool = False, wait_s: float | None = None) -> None:
        """Open the cache at `root`; `lock=True` for a run that writes it (one writer at a time,
        a second waits `wait_s`, by default `LOCK_WAIT_S`)."""
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.locked = lock
        if lock:
            folderlock.acquire(self.root, "the generation cache", LOCK_WAIT_S if wait_s is None else wait_s)
        remove_stale_temps(self.root, ".part")  # files a killed writer never finished
        remove_stale_temps(self.root, ".pack")
        self._tmp = 0
        if lock:
            try:
                self._set_aside([(p, why) for p in self.shards() if (why := _problem(p))])
            except BaseException:
                self.close()
                raise
        self._seq = max((_seq(p) for p in self.shards()), default=0)

    def close(self) -> None:
        """Release the writer's lock (the process's end releases it too)."""
        if self.locked:
            self.locked = False
            folderlock.release(self.root)

    def __enter__(self) -> GenerationCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def shards(self) -> list[Path]:
        """Every cache file, packs and parts, in `seq` order (the order duplicates are resolved in)."""
        files = [*self.root.glob("pack-*.parquet"), *self.root.glob("part-*.parquet")]
        return sorted(files, key=lambda p: (_seq(p), p.name))

    def _set_aside(self, damaged: list[tuple[Path, str]]) -> None:
        """Move damaged files to the quarantine folder, one warning line each; stop when DVC's cache
        holds a good copy of one (`CacheDamaged`, saying how to put it back)."""
        restore = []
        for path, why in damaged:
            good = dvcstore.good_copy(path)
            folder = self.root / QUARANTINE
            folder.mkdir(exist_ok=True)
            target = folder / path.name
            n = 1
            while target.exists():
                n += 1
                target = folder / f"{path.stem}.{n}{path.suffix}"
            os.replace(path, target)
            logger.warning(
                "%s: damaged generation-cache file (%s); moved to %s: answers that no other file holds "
                "are asked again",
                path,
                why,
                target,
            )
            if good is not None:
                restore.append((path, why, good))
        if not restore:
            return
        path, why, good = restore[0]
        fix = (
            f"`cp {good.obj} {path}`"
            if good.unsaved
            else f"`dvc checkout {good.out}`"  # safe: the folder holds nothing dvc.lock does not list
        )
        more = f" (and {len(restore) - 1} more)" if len(restore) > 1 else ""
        raise CacheDamaged(
            f"{path}: damaged generation-cache file ({why}){more}, moved to {self.root / QUARANTINE}; "
            f"DVC's cache holds its good copy: run {fix}, then run again (a run without it asks the "
            "teacher again for the answers it held)"
        )

    def _read(self, read: Callable[[], T]) -> T:
        """`read()`; when it fails on a damaged file, a writer sets the file aside and reads again."""
        try:
            return read()
        except READ_ERRORS as exc:
            damaged = [(p, why) for p in self.shards() if (why := _problem(p, whole=True))]
            if not damaged:
                raise InputError(f"{self.root}: generation cache unreadable: {_first_line(exc)}") from None
            if not self.locked:
                path, why = damaged[0]
                raise InputError(f"{path}: damaged generation-cache file ({why})") from None
        self._set_aside(damaged)
        return self._read(read)

    def _scan(self) -> pl.LazyFrame | None:
        files = self.shards()
        return _scan(files) if files else None

    def _empty(self) -> pl.DataFrame:
        return pl.DataFrame(schema=_frame_schema())

    def keys(self) -> pl.Series:
        """Every cached key, once (reads only the key column)."""
        return self._read(self._keys)

    def _keys(self) -> pl.Series:
        lf = self._scan()
        if lf is None:
            return pl.Series("key", [], dtype=pl.String)
        return lf.select(pl.col("key").unique()).collect()["key"]

    def load(self, keys: Iterable[str] | None = None) -> pl.DataFrame:
        """All cached rows (or those with `keys`), one per key."""
        wanted = None if keys is None else pl.Series(list(keys), dtype=pl.String)

        def read() -> pl.DataFrame:
            lf = self._scan()
            if lf is None:
                return self._empty()
            if wanted is not None:
                lf = lf.filter(pl.col("key").is_in(wanted))
            return lf.collect().unique(subset="key", keep="first", maintain_order=True)

        return self._read(read)

    def token_usage(self, keys: pl.Series) -> pl.DataFrame:
        """(key, prompt_tokens, completion_tokens) of the cached rows with `keys`, one per key."""
        lf = self._scan()
        if lf is None or keys.is_empty():
            return self._empty().select("key", "prompt_tokens", "completion_tokens")
        lf = lf.select("key", "prompt_tokens", "completion_tokens").filter(
            pl.col("key").is_in(keys.implode())
        )
        return lf.collect().unique(subset="key", keep="first", maintain_order=True)

    def lookup(self, keys: pl.Series, first_id: str, last_id: str) -> pl.DataFrame:
        """Cached rows with `keys`, one per key, whose prompt ids lie in [first_id, last_id]."""

        def read() -> pl.DataFrame:
            lf = self._scan()
            if lf is None or keys.is_empty():
                return self._empty()
            in_range = pl.col("id").is_between(pl.lit(first_id), pl.lit(last_id))
            lf = lf.filter(in_range & pl.col("key").is_in(keys.implode()))
            return lf.collect().unique(subset="key", keep="first", maintain_order=True)

        return self._read(read)

    def _write(self, table: pa.Table, kind: str, seq: int) -> Path:
        self._tmp += 1
        tmp = self.root / f".{kind}.{os.getpid()}.{self._tmp:06d}.tmp"
        with open(tmp, "w+b") as fh:
            pq.write_table(table, fh, compression="zstd", row_group_size=CACHE_ROW_GROUP)
            fh.flush()
            os.fsync(fh.fileno())
            fh.seek(0)
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
        target = self.root / f"{kind}-{seq:020d}-{digest[:32]}.parquet"
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
                "served_model": [r.served_model for r in results],
            },
            schema=CACHE_SCHEMA,
        )
        self._seq += 1
        return self._write(table.sort_by([("id", "ascending"), ("key", "ascending")]), "part", self._seq)

    def small_files(self, pack_bytes: int) -> list[Path]:
        """Parts, and packs under a quarter of `pack_bytes`: what `compact` would merge."""
        return [p for p in self.shards() if _is_part(p) or p.stat().st_size < pack_bytes // 4]

    def compact(self, pack_bytes: int = PACK_BYTES) -> int:
        """Merge the small files into packs of about `pack_bytes`; returns the files merged.

        Each pack is written and renamed before its inputs are deleted: a kill leaves every
        generation in a pack, in its part, or in both (read once).
        """
        return self._read(lambda: self._compact(pack_bytes))

    def _compact(self, pack_bytes: int) -> int:
        small = self.small_files(pack_bytes)
        if len(small) < 2 and not any(_is_part(p) for p in small):
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
            if len(group) < 2 and not _is_part(group[0]):
                continue
            table = (
                _scan(group)
                .unique(subset="key", keep="first", maintain_order=True)
                .sort("id", "key")
                .collect()
                .to_arrow()
                .cast(CACHE_SCHEMA)
                .combine_chunks()  # row groups then depend on the rows only, not on how they were read
            )
            pack = self._write(table, "pack", min(_seq(p) for p in group))
            for p in group:
                if p != pack:  # a pack whose rows the others only repeat comes out under its own name
                    p.unlink()
            merged += len(group)
        _fsync_dir(self.root)
        logger.info("generation cache: merged %d files; %d files now", merged, len(self.shards()))
        return merged


def _frame_schema() -> pl.Schema:
    return pl.from_arrow(CACHE_SCHEMA.empty_table()).schema  # type: ignore[union-attr]


def _scan(files: list[Path]) -> pl.LazyFrame:
    """Cache files as one frame (a file written before a column existed reads it as nulls)."""
    return pl.scan_parquet([str(p) for p in files], schema=_frame_schema(), missing_columns="insert")


def _seq(path: Path) -> int:
    """The write-order number in a cache file's name (earlier versions put a time there: same order)."""
    field = path.name.split("-")[1]
    return int(field) if field.isdigit() else 0


def _problem(path: Path, *, whole: bool = False) -> str | None:
    """Why the file's Parquet footer (a truncated file), or with `whole` the whole file, cannot be
    read; None when it can."""
    try:
        pq.read_table(path) if whole else pq.read_metadata(path)
    except (pa.ArrowException, OSError) as exc:
        return _first_line(exc)
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _is_part(path: Path) -> bool:
    return path.name.startswith("part-")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
