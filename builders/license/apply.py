"""Apply the license policy to a prompt table: kept rows, removed rows, summary and stats."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl
import pyarrow as pa

from builders.license.classes import SPDX_IDS, USE_CLASSES
from builders.license.policy import STAGE, LicenseConfig, decide_tasks, resolve_tasks
from builders.license.registry import Registry, resolve_task
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


def _counts(tasks: pl.DataFrame, column: str) -> dict[str, int]:
    """Rows per value of `column` in a frame of tasks with their `rows` ("" counted as "none")."""
    if tasks.is_empty():
        return {}
    counts = tasks.group_by(column).agg(pl.col("rows").sum()).sort(column)
    return {str(k) if k != "" else "none": int(v) for k, v in counts.iter_rows()}


def build_summary(kept: pl.DataFrame, registry: Registry, cfg: LicenseConfig) -> LicenseSummary:
    """`license_summary.json` from the kept tasks and their `rows`: counts, attributions owed,
    teachers' terms, the release license."""
    attributions = []
    share_alike = []
    per_ds = (
        kept.filter(pl.col("source_dataset") != "")
        .group_by("source_dataset")
        .agg(pl.col("rows").sum())
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
        [lic or "unknown" for lic in kept["license"].unique().to_list()], cfg.release_use
    )
    return LicenseSummary(
        registry=dict(registry.source),
        policy=cfg.model_dump(mode="json", exclude={"teachers"}),
        rows=int(kept["rows"].sum()),
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


def check_columns(columns: list[str], source: str) -> None:
    """The columns the stage needs are there."""
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise InputError(f"{source}: missing columns {missing}")


def empty_value(df: pl.DataFrame, column: str) -> tuple[bool, str | None]:
    """(whether a row of `df` has `column` null or empty, the first such row's id)."""
    bad = df.filter(pl.col(column).is_null() | (pl.col(column) == ""))
    return (True, bad["id"][0]) if bad.height else (False, None)


def license_tasks(pairs: pl.DataFrame, registry: Registry, cfg: LicenseConfig) -> pl.DataFrame:
    """Each (task_name, submix) of `pairs` (with its `rows`): license columns, `reason` (null when
    kept) and `detail`."""
    decided = decide_tasks(resolve_tasks(registry, pairs), cfg)
    return decided.join(pairs.select("task_name", "submix", "rows"), on=["task_name", "submix"], how="left")


def license_rows(df: pl.DataFrame, tasks: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(kept rows with the license columns, in `df`'s order; removed rows, unsorted) of a frame
    of prompts, by their task's decision."""
    rows = df.join(
        tasks.drop("rows"), on=["task_name", "submix"], how="left", validate="m:1", maintain_order="left"
    )
    kept = rows.filter(pl.col("reason").is_null()).drop("reason", "detail")
    removed = (
        rows.filter(pl.col("reason").is_not_null())
        .with_columns(pl.lit(STAGE).alias("stage"))
        .select([f.name for f in REMOVED_LICENSE_SCHEMA])
    )
    return kept, removed


def license_figures(tasks: pl.DataFrame, registry: Registry, cfg: LicenseConfig) -> tuple[dict, dict]:
    """(license_summary.json, stats.json) from the decided tasks and their rows."""
    kept = tasks.filter(pl.col("reason").is_null())
    removed = tasks.filter(pl.col("reason").is_not_null())
    rows_in, rows_out = int(tasks["rows"].sum()), int(kept["rows"].sum())
    funnel = Funnel(stage=STAGE, rows_in=rows_in, rows_out=rows_out, removed=_counts(removed, "reason"))
    task_rows = tasks.select("task_name", "submix", "license_resolution", "rows").sort("task_name", "submix")
    stats = {
        "funnel": funnel.dump(),
        "coverage": {"input": _coverage(task_rows), "audit": audit_coverage(registry)},
    }
    return build_summary(kept, registry, cfg).dump(), stats


def apply_license(
    prompts: pl.DataFrame, registry: Registry, cfg: LicenseConfig, source: str = "prompts"
) -> LicenseResult:
    """Resolve every row's license, apply the policy, and build the stage's outputs (in memory;
    the stage streams the same steps, `builders.license`)."""
    check_columns(prompts.columns, source)
    for column in REQUIRED_COLUMNS:
        found, row_id = empty_value(prompts, column)
        if found:
            raise InputError(f"{source}: row {row_id!r} has an empty '{column}'")
    tasks = license_tasks(prompts.group_by("task_name", "submix").len("rows"), registry, cfg)
    kept, removed = license_rows(prompts, tasks)
    summary, stats = license_figures(tasks, registry, cfg)
    return LicenseResult(kept.sort("id"), removed.sort(["reason", "id"]), summary, stats)
