"""Apply the license policy to a prompt table: kept rows, removed rows, summary and stats."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl
import pyarrow as pa

from builders.licenses.classes import SPDX_IDS, USE_CLASSES
from builders.licenses.policy import STAGE, LicenseConfig, decide_tasks, resolve_tasks
from builders.licenses.registry import Registry, resolve_task
from core.contracts import Funnel, LicenseSummary, ReleaseLicense
from core.errors import InputError
from core.schema import LICENSE_FIELDS, PROMPT_SCHEMA, REMOVED_SCHEMA, fields

LICENSED_PROMPT_SCHEMA = pa.schema([*PROMPT_SCHEMA, *LICENSE_FIELDS])
REMOVED_LICENSE_SCHEMA = pa.schema(
    [*REMOVED_SCHEMA, *fields("submix? task_name? source_dataset? license? license_use? license_resolution?")]
)
REQUIRED_COLUMNS = ("id", "submix", "task_name")


@dataclass(frozen=True)
class LicenseResult:
    """What the `license` stage writes."""

    kept: pl.DataFrame
    removed: pl.DataFrame
    summary: dict[str, Any]
    stats: dict[str, Any]


def _share(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


def _coverage(task_rows: pl.DataFrame) -> dict[str, Any]:
    """Coverage of a frame with one row per task: task_name, submix, license_resolution, rows."""
    resolved = task_rows.filter(pl.col("license_resolution") != "unknown")
    tasks, rows = task_rows.height, int(task_rows["rows"].sum())
    out: dict[str, Any] = {
        "tasks": tasks,
        "tasks_resolved": resolved.height,
        "tasks_share": _share(resolved.height, tasks),
        "rows": rows,
        "rows_resolved": int(resolved["rows"].sum()),
        "rows_share": _share(int(resolved["rows"].sum()), rows),
        "by_resolution": {},
        "by_submix": {},
    }
    for how in ("exact", "by_dataset", "unknown"):
        part = task_rows.filter(pl.col("license_resolution") == how)
        out["by_resolution"][how] = {"tasks": part.height, "rows": int(part["rows"].sum())}
    for submix in sorted(set(task_rows["submix"].to_list())):
        part = task_rows.filter(pl.col("submix") == submix)
        ok = part.filter(pl.col("license_resolution") != "unknown")
        out["by_submix"][submix] = {
            "tasks": part.height,
            "tasks_resolved": ok.height,
            "tasks_share": _share(ok.height, part.height),
            "rows": int(part["rows"].sum()),
            "rows_resolved": int(ok["rows"].sum()),
        }
    return out


def audit_coverage(registry: Registry) -> dict[str, Any]:
    """Coverage on every FLAN task name the audit knows, and the use classes it gives them."""
    rows = []
    for task, uid in sorted(registry.tasks.items()):
        ds = registry.datasets[uid]
        res = resolve_task(registry, task, ds.submix)
        rows.append(
            {
                "task_name": task,
                "submix": ds.submix,
                "license_resolution": res.resolution,
                "rows": 0,
                "license_use": ds.license_use,
            }
        )
    frame = pl.DataFrame(rows)
    out = _coverage(frame)
    for key in ("rows", "rows_resolved", "rows_share"):
        out.pop(key)
    for part in out["by_submix"].values():
        part.pop("rows")
        part.pop("rows_resolved")
    out["by_resolution"] = {how: part["tasks"] for how, part in out["by_resolution"].items()}
    counts = frame.group_by("license_use").len()
    by_use = dict(zip(counts["license_use"].to_list(), counts["len"].to_list(), strict=True))
    out["tasks_by_use"] = {use: int(by_use.get(use, 0)) for use in USE_CLASSES}
    return out


def _release_license(licenses: list[str], use: str) -> ReleaseLicense:
    distinct = sorted(set(licenses))
    spdx = set(SPDX_IDS.values())
    if len(distinct) == 1 and distinct[0] in spdx:
        return ReleaseLicense(license=distinct[0], licenses=distinct, use=use)
    return ReleaseLicense(license="other", licenses=distinct, use=use)


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
    stats = {
        "funnel": funnel.dump(),
        "coverage": {"input": _coverage(task_rows), "audit": audit_coverage(registry)},
    }
    return LicenseResult(kept, removed, build_summary(kept, registry, cfg).dump(), stats)
