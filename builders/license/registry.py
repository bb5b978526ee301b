"""The committed license registry: loading, validation and per-task resolution.

A task resolves `exact` when the audit lists its `task_name`; `by_dataset` when its name carries
the stem of exactly one audited source dataset of the same submix (see
`builders.license.audit.dataset_stems` for the rule per submix; longest stem wins); otherwise
`unknown`, with no license at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from builders.license.audit import REGISTRY_FORMAT
from builders.license.classes import USE_CLASSES
from core.errors import PipelineError
from core.io import read_document
from core.schema import SUBMIXES

REGISTRY_PATH = Path(__file__).with_name("registry.json")
_NIV2_TASK = re.compile(r"^task\d+_(?P<slug>.+)$")

UseClass = Literal["commercial", "unspecified", "non-commercial", "academic-only"]


class RegistryError(PipelineError, ValueError):
    """The registry file is missing or malformed; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LicenseRecord(_Strict):
    """One license of a source dataset, as the audit gives it."""

    name: str
    spdx: str | None
    url: str
    use: UseClass
    attribution: bool
    share_alike: bool


class DatasetRecord(_Strict):
    """A source dataset of the audit and its resolved license classes."""

    name: str
    submix: Literal["cot", "dialog", "flan2021", "t0", "niv2"]
    url: str
    task_names: list[str]
    licenses: list[LicenseRecord]
    license: str
    license_use: UseClass
    attribution_required: bool
    share_alike: bool


class Registry(_Strict):
    """The whole registry file."""

    format: Literal[1]
    source: dict[str, str]
    datasets: dict[str, DatasetRecord]
    tasks: dict[str, str]
    stems: dict[str, dict[str, str]]


@dataclass(frozen=True)
class Resolution:
    """How one task resolved, and to which dataset (None when unknown)."""

    resolution: str
    dataset_id: str | None


def load_registry(path: str | Path = REGISTRY_PATH) -> Registry:
    """Load and validate the registry; a malformed file raises `RegistryError` naming file and key."""
    path = Path(path)
    data = read_document(path, what="registry file", error=RegistryError)
    if isinstance(data, dict) and data.get("format") != REGISTRY_FORMAT:
        raise RegistryError(f"{path}: format: expected {REGISTRY_FORMAT}, got {data.get('format')!r}")
    try:
        registry = Registry.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise RegistryError(f"{path}: {loc}: {first['msg']} ({exc.error_count()} error(s))") from None
    for task, uid in registry.tasks.items():
        if uid not in registry.datasets:
            raise RegistryError(f"{path}: tasks.{task}: unknown dataset {uid!r}")
    for submix, table in registry.stems.items():
        if submix not in SUBMIXES:
            raise RegistryError(f"{path}: stems.{submix}: unknown submix")
        for stem, uid in table.items():
            if uid not in registry.datasets:
                raise RegistryError(f"{path}: stems.{submix}.{stem}: unknown dataset {uid!r}")
    for uid, record in registry.datasets.items():
        worst = max((lic.use for lic in record.licenses), key=USE_CLASSES.index, default="unspecified")
        if record.license_use != worst:
            raise RegistryError(
                f"{path}: datasets.{uid}.license_use: {record.license_use!r} is not the most "
                f"restrictive of its licenses ({worst!r})"
            )
    return registry


def _stem_candidates(task_name: str, submix: str) -> list[str]:
    """Keys to look up in `stems[submix]`, best (longest) first."""
    if submix in ("cot", "dialog"):
        return [task_name.removesuffix("_ii")]
    if submix == "flan2021":
        return [task_name.split(":", 1)[0]]
    if submix == "niv2":
        match = _NIV2_TASK.match(task_name)
        if not match:
            return []
        name = match.group("slug")
    else:
        name = task_name
    tokens = name.split("_")
    return ["_".join(tokens[:i]) for i in range(len(tokens), 0, -1)]


def resolve_task(registry: Registry, task_name: str, submix: str) -> Resolution:
    """Resolve one FLAN task name (of `submix`) to an audited dataset, or `unknown`."""
    uid = registry.tasks.get(task_name)
    if uid is not None:
        return Resolution("exact", uid)
    table = registry.stems.get(submix, {})
    for key in _stem_candidates(task_name, submix):
        if key in table:
            return Resolution("by_dataset", table[key])
    return Resolution("unknown", None)
