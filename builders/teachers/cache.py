"""The generation cache: completed generations in atomically written Parquet shards.

It lives outside the stage's DVC outs (a `persist: true` folder), so DVC's deletion of outs before a
run does not touch it. A generation is keyed by sha256 of (prompt id, system prompt, question,
teacher model, resolved revision, sampling params); a prompt whose key is present is never sent
again. Shards are written with a temp name then renamed, so a kill leaves either a whole shard or
none; duplicate keys (two runs racing) are resolved by keeping the first shard's row.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from builders.teachers.base import GenResult
from builders.teachers.config import SamplingConfig
from core.io import remove_stale_temps
from core.schema import fields

logger = logging.getLogger(__name__)

CACHE_SCHEMA = pa.schema(
    fields(
        "key id teacher_model model_revision response finish_reason prompt_tokens:int32"
        " completion_tokens:int32"
    )
)


def cache_key(
    prompt_id: str, system_prompt: str, question: str, model: str, revision: str, sampling: SamplingConfig
) -> str:
    """sha256 over everything that determines a generation."""
    payload = json.dumps(
        [prompt_id, system_prompt, question, model, revision, sampling.model_dump(mode="json")],
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class GenerationCache:
    """A folder of `part-*.parquet` shards of completed generations."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.root, ".part")  # shards a killed writer never finished
        self._seq = 0

    def shards(self) -> list[Path]:
        return sorted(self.root.glob("part-*.parquet"))

    def load(self, keys: Iterable[str] | None = None) -> pl.DataFrame:
        """All cached rows (or those with `keys`), one per key."""
        empty = pl.DataFrame(schema=pl.from_arrow(CACHE_SCHEMA.empty_table()).schema)
        shards = self.shards()
        if not shards:
            return empty
        lf = pl.scan_parquet([str(p) for p in shards])
        if keys is not None:
            lf = lf.filter(pl.col("key").is_in(list(keys)))
        return lf.collect().unique(subset="key", keep="first", maintain_order=True)

    def write_shard(self, results: list[GenResult], model: str, revision: str) -> Path | None:
        """Write completed generations as one new shard, atomically."""
        if not results:
            return None
        self._seq += 1
        name = f"part-{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}.parquet"
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
        target = self.root / name
        tmp = self.root / f".part.{os.getpid()}.{name}.tmp"
        with open(tmp, "wb") as fh:
            pq.write_table(table, fh, compression="zstd")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        return target
