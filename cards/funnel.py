"""The pipeline funnel: rows in and out of every filtering stage, as a table and a PNG chart."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

from core.contracts import Funnel, parse_contract
from core.errors import InputError

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from core.io import atomic_path


class FunnelError(InputError):
    """A stage's `funnel` block is missing, malformed or does not add up."""


def parse_funnel(stats: Mapping[str, Any], source: str) -> Funnel:
    """Validate the `funnel` block of one stats.json; errors name the file and key."""
    if not isinstance(stats.get("funnel"), Mapping):
        raise FunnelError(f"{source}: missing 'funnel' block")
    try:
        return parse_contract(Funnel, stats["funnel"], source)
    except InputError as exc:
        raise FunnelError(str(exc)) from None


def funnel_table(steps: list[Funnel]) -> str:
    """A Markdown table: stage, rows in, rows out, removed (with reasons)."""
    lines = ["| stage | rows in | rows out | removed | reasons |", "|---|---:|---:|---:|---|"]
    for s in steps:
        reasons = ", ".join(f"{k}: {v:,}" for k, v in s.removed.items() if v) or "none"
        lines.append(f"| {s.stage} | {s.rows_in:,} | {s.rows_out:,} | {s.removed_total:,} | {reasons} |")
    return "\n".join(lines)


def funnel_chart(steps: list[Funnel], path: str | Path) -> None:
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
