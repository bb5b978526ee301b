"""DVC stage `license`: give every prompt its license provenance and apply the license policy.

    python -m builders.license --params params.yaml --prompts data/prompts/prompts.parquet \
        --out data/license [--registry builders/license/registry.json]

Writes `prompts.parquet` (kept rows plus the license columns), `removed.parquet`,
`license_summary.json` and `stats.json` into `--out`; on any error nothing is written.

The stage streams: a first pass reads the task, submix and id columns (the decisions are per task),
a second pass the prompts a row group at a time, writing the kept rows as they come; memory holds
the removed rows' short columns, never the text. A table not sorted by id (the prompt table
contract) is handled in memory, as before.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from builders.license.apply import (
    LICENSED_PROMPT_SCHEMA,
    REMOVED_LICENSE_SCHEMA,
    REQUIRED_COLUMNS,
    apply_license,
    check_columns,
    empty_value,
    license_figures,
    license_rows,
    license_tasks,
)
from builders.license.policy import LicenseConfig, check_dataset_lists, check_teachers
from builders.license.registry import REGISTRY_PATH, load_registry
from core.config import load_section
from core.errors import InputError
from core.io import iter_batches, read_parquet, reading, write_json, write_parquet, write_parquet_frames
from core.stage import stage_main

logger = logging.getLogger(__name__)


@dataclass
class PromptScan:
    """What the first pass finds: rows per (task_name, submix), the first row with an empty
    required value per column, and whether ids strictly increase."""

    pairs: list[pl.DataFrame] = field(default_factory=list)
    empty: dict[str, str | None] = field(default_factory=dict)
    sorted_by_id: bool = True
    last_id: str | None = None

    def add(self, df: pl.DataFrame) -> None:
        self.pairs.append(df.group_by("task_name", "submix").len("rows"))
        for column in REQUIRED_COLUMNS:
            found, row_id = empty_value(df, column)
            if found and column not in self.empty:
                self.empty[column] = row_id
        ids = df["id"]
        if self.sorted_by_id and ids.len():
            ahead = self.last_id is None or (ids[0] is not None and ids[0] > self.last_id)
            self.sorted_by_id = ahead and bool((ids.slice(1) > ids.slice(0, ids.len() - 1)).all())
            self.last_id = ids[-1]

    def counts(self) -> pl.DataFrame:
        empty = pl.DataFrame(schema={"task_name": pl.String, "submix": pl.String, "rows": pl.UInt32})
        frames = [empty.cast({"rows": pl.UInt32}), *(p.cast({"rows": pl.UInt32}) for p in self.pairs)]
        return pl.concat(frames).group_by("task_name", "submix").agg(pl.col("rows").sum())


def _frames(path: Path, columns: list[str] | None = None) -> Iterator[pl.DataFrame]:
    for batch in iter_batches(path, columns):
        df = pl.from_arrow(pa.Table.from_batches([batch]))
        assert isinstance(df, pl.DataFrame)
        yield df


def run(params: Path, prompts: Path, out: Path, registry: Path = REGISTRY_PATH) -> None:
    """Load params, registry and the prompts' task columns; check everything; then write the four
    outputs, streaming the prompts."""
    cfg = load_section(LicenseConfig, params, "license")
    logger.info("license params: %s", cfg.model_dump(mode="json"))
    check_teachers(cfg, str(params))
    reg = load_registry(registry)
    with reading(prompts):
        check_columns(pq.ParquetFile(prompts).schema_arrow.names, str(prompts))
    scan = PromptScan()
    for df in _frames(prompts, list(REQUIRED_COLUMNS)):
        scan.add(df)
    pairs = scan.counts()
    check_dataset_lists(cfg, reg, set(pairs["task_name"].to_list()), str(params))
    for column in REQUIRED_COLUMNS:
        if column in scan.empty:
            raise InputError(f"{prompts}: row {scan.empty[column]!r} has an empty '{column}'")
    if not scan.sorted_by_id:
        logger.warning("%s is not sorted by id: licensing it in memory", prompts)
        result = apply_license(read_parquet(prompts), reg, cfg, source=str(prompts))
        write_parquet(result.kept, out / "prompts.parquet", LICENSED_PROMPT_SCHEMA)
        removed_rows, summary, stats = result.removed, result.summary, result.stats
    else:
        tasks = license_tasks(pairs, reg, cfg)
        removed: list[pl.DataFrame] = []

        def kept_frames() -> Iterator[pl.DataFrame]:
            for df in _frames(prompts):
                kept, gone = license_rows(df, tasks)
                removed.append(gone)
                yield kept

        write_parquet_frames(kept_frames(), out / "prompts.parquet", LICENSED_PROMPT_SCHEMA)
        none = pl.from_arrow(REMOVED_LICENSE_SCHEMA.empty_table())
        removed_rows = pl.concat([none, *removed], how="vertical_relaxed").sort(["reason", "id"])
        summary, stats = license_figures(tasks, reg, cfg)
    write_parquet(removed_rows, out / "removed.parquet", REMOVED_LICENSE_SCHEMA)
    write_json(summary, out / "license_summary.json")
    write_json(stats, out / "stats.json")
    logger.info("license: %s", stats["funnel"])


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `license` stage."""
    return stage_main(run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
