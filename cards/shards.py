"""Write a table as Hub-layout Parquet shards and describe them for the card's `dataset_info`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
from datasets import Features

from core.io import write_parquet


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


def write_shards(
    df: pl.DataFrame,
    schema: pa.Schema,
    root: Path,
    config_name: str,
    split: str,
    shard_max_bytes: int,
) -> ConfigShards:
    """Write `df` (already sorted) as `data/<config>/<split>-0000k-of-0000n.parquet` under `root`."""
    table_bytes = int(df.estimated_size())
    n = shard_count(table_bytes, shard_max_bytes)
    rows = df.height
    per_shard = math.ceil(rows / n) if rows else 0
    files = []
    for k in range(n):
        rel = f"data/{config_name}/{split}-{k:05d}-of-{n:05d}.parquet"
        write_parquet(df.slice(k * per_shard, per_shard), root / rel, schema)
        files.append(rel)
    features = Features.from_arrow_schema(schema)
    arrow_bytes = int(pa.Table.from_pylist([], schema=schema).nbytes)
    if rows:
        arrow_bytes = int(df.to_arrow().nbytes)
    return ConfigShards(
        config_name=config_name,
        split=split,
        files=files,
        num_examples=rows,
        num_bytes=arrow_bytes,
        download_size=sum((root / f).stat().st_size for f in files),
        features=features._to_yaml_list(),
    )
