"""The `license` stage's rules as written before the stage streamed: the whole table in memory.

Kept as the oracle of `tests/test_license_stream.py`: the streaming stage must write the same bytes
for the same input. This is the earlier `apply_license` and `build_summary`, unchanged but for the
imports; task resolution, decisions and coverage come from the library.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from builders.license.apply import (
    REMOVED_LICENSE_SCHEMA,
    REQUIRED_COLUMNS,
    LicenseResult,
    _coverage,
    _release_license,
    audit_coverage,
)
from builders.license.policy import STAGE, LicenseConfig, decide_tasks, resolve_tasks
from builders.license.registry import Registry
from core.contracts import Funnel, LicenseSummary
from core.errors import InputError


def _counts(df: pl.DataFrame, column: str) -> dict[str, int]:
    if df.is_empty():
        return {}
    counts = df.group_by(column).len().sort(column)
    return {str(k) if k != "" else "none": int(v) for k, v in counts.iter_rows()}


def build_summary(kept: pl.DataFrame, registry: Registry, cfg: LicenseConfig) -> LicenseSummary:
    """`license_summary.json`: counts, attributions owed, teachers' terms, the release license."""
    attributions = []
    share_alike = []
    if not kept.is_empty():
        per_ds = (
            kept.filter(pl.col("source_dataset") != "")
            .group_by("source_dataset")
            .len()
            .sort("source_dataset")
        )
        for uid, rows in per_ds.iter_rows():
            ds = registry.datasets[uid]
            entry = {
                "dataset": uid,
                "name": ds.name,
                "license": ds.license,
                "url": ds.url,
                "license_urls": sorted({lic.url for lic in ds.licenses if lic.url}),
                "rows": int(rows),
            }
            if ds.attribution_required:
                attributions.append(entry)
            if ds.share_alike:
                share_alike.append({"dataset": uid, "license": ds.license, "rows": int(rows)})
    release = _release_license(
        [lic or "unknown" for lic in kept["license"].unique().to_list()] if not kept.is_empty() else [],
        cfg.release_use,
    )
    return LicenseSummary(
        registry=dict(registry.source),
        policy=cfg.model_dump(mode="json", exclude={"teachers"}),
        rows=kept.height,
        counts={
            "license": _counts(kept, "license"),
            "license_use": _counts(kept, "license_use"),
            "license_resolution": _counts(kept, "license_resolution"),
        },
        attributions=attributions,
        share_alike=share_alike,
        teachers=dict(sorted(cfg.teachers.items())),
        release=release,
    )


def apply_license(
    prompts: pl.DataFrame, registry: Registry, cfg: LicenseConfig, source: str = "prompts"
) -> LicenseResult:
    """Resolve every row's license, apply the policy, and build the stage's outputs."""
    missing = [c for c in REQUIRED_COLUMNS if c not in prompts.columns]
    if missing:
        raise InputError(f"{source}: missing columns {missing}")
    for column in REQUIRED_COLUMNS:
        nulls = prompts.filter(pl.col(column).is_null() | (pl.col(column) == ""))
        if not nulls.is_empty():
            raise InputError(f"{source}: row {nulls.row(0, named=True).get('id')!r} has an empty '{column}'")
    decided = decide_tasks(resolve_tasks(registry, prompts), cfg)
    rows = prompts.join(decided, on=["task_name", "submix"], how="left", validate="m:1")
    kept = rows.filter(pl.col("reason").is_null()).drop("reason", "detail").sort("id")
    removed = (
        rows.filter(pl.col("reason").is_not_null())
        .with_columns(pl.lit(STAGE).alias("stage"))
        .select([f.name for f in REMOVED_LICENSE_SCHEMA])
        .sort(["reason", "id"])
    )
    task_rows = (
        rows.group_by("task_name", "submix", "license_resolution").len("rows").sort("task_name", "submix")
    )
    removed_counts = _counts(removed, "reason")
    funnel = Funnel(stage=STAGE, rows_in=prompts.height, rows_out=kept.height, removed=removed_counts)
    stats: dict[str, Any] = {
        "funnel": funnel.dump(),
        "coverage": {"input": _coverage(task_rows), "audit": audit_coverage(registry)},
    }
    return LicenseResult(kept, removed, build_summary(kept, registry, cfg).dump(), stats)
