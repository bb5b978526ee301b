"""The pipeline's filtering stages, as dvc.yaml declares them: the one list of stages.

A filtering stage is a dvc.yaml stage with a `removed.parquet` among its outs and a `stats.json`
among its metrics (the funnel contract: `core.contracts.Funnel`). The release's funnel, the card's
params and the release's inputs are derived from this list, in dvc.yaml order, so a new filtering
stage is its dvc.yaml entry (and the release's deps and params listing its stats and section,
which `tests/test_dvc_wiring.py` checks) plus its package.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

STATS = "stats.json"
REMOVED = "removed.parquet"
_VAR = re.compile(r"\$\{\s*([\w.-]+)\s*\}")


def lookup(variables: Mapping[str, Any], dotted: str) -> Any:
    """The value of `a.b.c` in `variables`; KeyError naming it if absent."""
    value: Any = variables
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise KeyError(dotted)
        value = value[part]
    return value


def variables(doc: Mapping[str, Any], spec: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """dvc.yaml's inline `vars` (of the file, then of the stage `spec`) as one mapping."""
    found: dict[str, Any] = {}
    for entry in [*(doc.get("vars") or []), *((spec or {}).get("vars") or [])]:
        if isinstance(entry, dict):
            found.update(entry)
    return found


def resolve(text: str, variables: Mapping[str, Any]) -> str:
    """`text` with each `${name}` replaced from `variables` (KeyError if one is unknown)."""
    return _VAR.sub(lambda m: str(lookup(variables, m.group(1))), text)


def entry_paths(entries: list[Any] | None) -> list[str]:
    """The paths of a dvc.yaml deps/outs/metrics list (an entry is a path or {path: options})."""
    return [next(iter(e)) if isinstance(e, dict) else str(e) for e in entries or []]


@dataclass(frozen=True)
class FilterStage:
    """A filtering stage: its name (also its params section) and its funnel files, relative to
    dvc.yaml's folder."""

    name: str
    stats: str
    removed: str


def filtering_stages(doc: Mapping[str, Any]) -> list[FilterStage]:
    """The filtering stages of a parsed dvc.yaml, in its order."""
    found = []
    for name, spec in (doc.get("stages") or {}).items():
        if not isinstance(spec, Mapping):
            continue
        names = variables(doc, spec)
        outs = [resolve(p, names) for p in entry_paths(spec.get("outs"))]
        metrics = [resolve(p, names) for p in entry_paths(spec.get("metrics"))]
        removed = [p for p in outs if Path(p).name == REMOVED]
        stats = [p for p in metrics if Path(p).name == STATS]
        if removed and stats:
            found.append(FilterStage(name=str(name), stats=stats[0], removed=removed[0]))
    return found


def load_filtering_stages(dvc_yaml: Path) -> list[FilterStage]:
    """`filtering_stages` of a dvc.yaml file (for tools and tests; a stage reads it with
    `core.io.read_document`, which pins it for the run)."""
    return filtering_stages(yaml.safe_load(dvc_yaml.read_text(encoding="utf-8")) or {})
