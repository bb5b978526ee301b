"""The pipeline funnel: rows in and out of every filtering stage, as a table and a PNG chart."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

from core.errors import PipelineError

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from core.io import atomic_path

PIPELINE_ORDER = ("prompts", "license", "dedup", "traces")


class FunnelError(PipelineError, ValueError):
    """A stage's `funnel` block is missing, malformed or does not add up."""


@dataclass(frozen=True)
class FunnelStep:
    """One stage's funnel block: rows_in == rows_out + sum(removed)."""

    stage: str
    rows_in: int
    rows_out: int
    removed: dict[str, int]

    @property
    def removed_total(self) -> int:
        return sum(self.removed.values())


def parse_funnel(stats: Mapping[str, Any], source: str) -> FunnelStep:
    """Validate the `funnel` block of one stats.json; errors name the file and key."""
    block = stats.get("funnel")
    if not isinstance(block, Mapping):
        raise FunnelError(f"{source}: missing 'funnel' block")
    for key in ("stage", "rows_in", "rows_out", "removed"):
        if key not in block:
            raise FunnelError(f"{source}: funnel.{key} is missing")
    removed = block["removed"]
    if not isinstance(removed, Mapping):
        raise FunnelError(f"{source}: funnel.removed must be a mapping of reason to count")
    ints = {"rows_in": block["rows_in"], "rows_out": block["rows_out"]}
    ints.update({f"removed.{k}": v for k, v in removed.items()})
    for key, value in ints.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise FunnelError(f"{source}: funnel.{key} must be a non-negative integer, got {value!r}")
    step = FunnelStep(
        stage=str(block["stage"]),
        rows_in=block["rows_in"],
        rows_out=block["rows_out"],
        removed={str(k): int(v) for k, v in sorted(removed.items())},
    )
    if step.rows_in != step.rows_out + step.removed_total:
        raise FunnelError(
            f"{source}: funnel does not add up: rows_in {step.rows_in} != rows_out {step.rows_out}"
            f" + removed {step.removed_total}"
        )
    return step


def funnel_table(steps: list[FunnelStep]) -> str:
    """A Markdown table: stage, rows in, rows out, removed (with reasons)."""
    lines = ["| stage | rows in | rows out | removed | reasons |", "|---|---:|---:|---:|---|"]
    for s in steps:
        reasons = ", ".join(f"{k}: {v:,}" for k, v in s.removed.items() if v) or "none"
        lines.append(f"| {s.stage} | {s.rows_in:,} | {s.rows_out:,} | {s.removed_total:,} | {reasons} |")
    return "\n".join(lines)


def funnel_chart(steps: list[FunnelStep], path: str | Path) -> None:
    """Draw rows kept and removed per stage as horizontal stacked bars, written atomically as PNG."""
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.7 * len(steps)), dpi=100)
    labels = [s.stage for s in steps][::-1]
    kept = [s.rows_out for s in steps][::-1]
    removed = [s.removed_total for s in steps][::-1]
    ax.barh(labels, kept, color="#4c72b0", label="rows out")
    ax.barh(labels, removed, left=kept, color="#dd8452", label="removed")
    top = max([s.rows_in for s in steps] + [1])
    for y, (k, r) in enumerate(zip(kept, removed, strict=True)):
        ax.text(k + r + top * 0.01, y, f"{k:,} kept / {r:,} removed", va="center", fontsize=8)
    ax.set_xlim(0, top * 1.45)
    ax.set_xlabel("rows")
    ax.set_title("Rows in and out of every stage")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        # No Software/date metadata, so the same funnel gives the same bytes.
        fig.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(fig)
