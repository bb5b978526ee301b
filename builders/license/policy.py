"""The license policy: typed params, per-row resolution and the keep/remove decision.

Order of checks for a row: deny list (`denied_dataset`), allow list (kept whatever its
license), then `unknown_license`, the use class (`academic_only`, `non_commercial`,
`unspecified_license`) and `share_alike`.
"""

from __future__ import annotations

from typing import Any

import polars as pl
from pydantic import Field, field_validator

from builders.license.classes import ACADEMIC_ONLY, COMMERCIAL, NON_COMMERCIAL, UNSPECIFIED
from builders.license.registry import Registry, resolve_task
from core.config import ParamsError, StageConfig
from core.contracts import TeacherTerms

STAGE = "license"
POLICY_USES = (COMMERCIAL, NON_COMMERCIAL, ACADEMIC_ONLY)
USE_REASONS = {
    ACADEMIC_ONLY: "academic_only",
    NON_COMMERCIAL: "non_commercial",
    UNSPECIFIED: "unspecified_license",
}
REASONS = (
    "denied_dataset",
    "unknown_license",
    "academic_only",
    "non_commercial",
    "unspecified_license",
    "share_alike",
)
LICENSE_COLUMNS = {
    "source_dataset": pl.String,
    "license": pl.String,
    "license_use": pl.String,
    "attribution_required": pl.Boolean,
    "share_alike": pl.Boolean,
    "license_resolution": pl.String,
}


class LicenseConfig(StageConfig):
    """The `license:` section of params.yaml."""

    allowed_uses: tuple[str, ...] = Field(
        (COMMERCIAL,),
        min_length=1,
        description="use classes that pass: commercial, non-commercial, academic-only",
    )
    allow_unknown: bool = False
    allow_unspecified: bool = False
    allow_share_alike: bool = True
    allow_datasets: tuple[str, ...] = ()
    deny_datasets: tuple[str, ...] = ()
    teachers: dict[str, TeacherTerms] = Field(default_factory=dict)

    @field_validator("allowed_uses")
    @classmethod
    def _known_uses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for use in value:
            if use == UNSPECIFIED:
                raise ValueError("'unspecified' is governed by license.allow_unspecified, not allowed_uses")
            if use not in POLICY_USES:
                raise ValueError(f"unknown use class {use!r}; expected one of {list(POLICY_USES)}")
        return tuple(sorted(set(value), key=POLICY_USES.index))

    @property
    def commercial_release(self) -> bool:
        """The policy admits commercial-use rows only, so the release is labeled commercial."""
        return self.allowed_uses == (COMMERCIAL,)

    @property
    def release_use(self) -> str:
        """The use the release is labeled for: the most restrictive allowed use class."""
        return self.allowed_uses[-1]


def check_teachers(cfg: LicenseConfig, source: str = "params") -> None:
    """Refuse a commercial release when a teacher's terms forbid it (error names the key)."""
    if not cfg.commercial_release:
        return
    problems = []
    for name, terms in sorted(cfg.teachers.items()):
        if not terms.commercial_use:
            problems.append(f"license.teachers.{name}.commercial_use is false")
        if not terms.outputs_may_train_models:
            problems.append(f"license.teachers.{name}.outputs_may_train_models is false")
    if problems:
        raise ParamsError(
            f"{source}: license.allowed_uses = [commercial] labels the release commercial, but "
            + "; ".join(problems)
            + " (drop that teacher or restrict allowed_uses)"
        )


def check_dataset_lists(cfg: LicenseConfig, registry: Registry, task_names: set[str], source: str) -> None:
    """Every allow/deny entry must name an audited dataset id or a known task name."""
    for key in ("allow_datasets", "deny_datasets"):
        for i, name in enumerate(getattr(cfg, key)):
            if name not in registry.datasets and name not in registry.tasks and name not in task_names:
                raise ParamsError(
                    f"{source}: license.{key}.{i}: {name!r} is neither a dataset id of the registry "
                    "(e.g. 'fc-flan-anli_r1') nor a task name"
                )


def resolve_tasks(registry: Registry, pairs: pl.DataFrame) -> pl.DataFrame:
    """License columns for each distinct (task_name, submix) of `pairs`."""
    rows: list[dict[str, Any]] = []
    for task_name, submix in (
        pairs.select("task_name", "submix").unique().sort("task_name", "submix").iter_rows()
    ):
        res = resolve_task(registry, task_name, submix)
        if res.dataset_id is None:
            rows.append(
                {
                    "task_name": task_name,
                    "submix": submix,
                    "source_dataset": "",
                    "license": "",
                    "license_use": UNSPECIFIED,
                    "attribution_required": False,
                    "share_alike": False,
                    "license_resolution": res.resolution,
                }
            )
            continue
        ds = registry.datasets[res.dataset_id]
        rows.append(
            {
                "task_name": task_name,
                "submix": submix,
                "source_dataset": res.dataset_id,
                "license": ds.license,
                "license_use": ds.license_use,
                "attribution_required": ds.attribution_required,
                "share_alike": ds.share_alike,
                "license_resolution": res.resolution,
            }
        )
    schema = {"task_name": pl.String, "submix": pl.String, **LICENSE_COLUMNS}
    return pl.DataFrame(rows, schema=schema)


def _decide(row: dict[str, Any], cfg: LicenseConfig) -> tuple[str | None, str]:
    """(reason or None when kept, detail) for one task's license columns."""
    names = {row["source_dataset"], row["task_name"]} - {""}
    who = row["source_dataset"] or row["task_name"]
    what = f"{who}: {row['license'] or 'no license'} ({row['license_use']})"
    if names & set(cfg.deny_datasets):
        return "denied_dataset", f"{what}; listed in license.deny_datasets"
    if names & set(cfg.allow_datasets):
        return None, ""
    if row["license_resolution"] == "unknown":
        if cfg.allow_unknown:
            return None, ""
        return "unknown_license", f"{row['task_name']}: not in the license registry"
    use = row["license_use"]
    if use == UNSPECIFIED:
        if not cfg.allow_unspecified:
            return "unspecified_license", what
    elif use not in cfg.allowed_uses:
        return USE_REASONS[use], what
    if row["share_alike"] and not cfg.allow_share_alike:
        return "share_alike", what
    return None, ""


def decide_tasks(resolved: pl.DataFrame, cfg: LicenseConfig) -> pl.DataFrame:
    """Add `reason` (null when kept) and `detail` to a frame of resolved tasks."""
    decisions = [_decide(row, cfg) for row in resolved.iter_rows(named=True)]
    return resolved.with_columns(
        pl.Series("reason", [d[0] for d in decisions], dtype=pl.String),
        pl.Series("detail", [d[1] for d in decisions], dtype=pl.String),
    )
