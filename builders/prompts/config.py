"""Typed config of the `prompts:` params section and the recipe file's budgets."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from core.config import ParamsError, StageConfig
from core.io import read_document
from core.schema import SUBMIXES

Submix = Literal["cot", "niv2", "t0", "flan2021", "dialog"]
TemplateType = Literal["zs_opt", "zs_noopt", "fs_opt", "fs_noopt"]


class PromptsConfig(StageConfig):
    """The `prompts:` section of params.yaml."""

    source: str = Field(min_length=1)
    source_revision: str | None = None
    recipe: str
    budget_scale: float = Field(1.0, gt=0)
    budgets: dict[Submix, int] = Field(default_factory=dict)
    template_types: list[TemplateType] = Field(default_factory=lambda: ["zs_opt", "zs_noopt"], min_length=1)
    max_per_task: int | None = Field(None, ge=1)
    exclude_tasks: dict[Submix, list[str]] = Field(default_factory=dict)
    heldout_tasks: list[str] = Field(default_factory=list)
    heldout_per_task: int = Field(20, ge=1)
    system_messages: str
    system_message_weights: dict[Submix, dict[int, float]]
    workers: int | None = Field(None, ge=1, description="processes reading and sampling; null = all cores")

    @field_validator("budgets")
    @classmethod
    def _non_negative(cls, v: dict[str, int]) -> dict[str, int]:
        bad = {k: n for k, n in v.items() if n < 0}
        if bad:
            raise ValueError(f"budgets must be >= 0, got {bad}")
        return v

    @field_validator("exclude_tasks")
    @classmethod
    def _valid_patterns(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for submix, patterns in v.items():
            for p in patterns:
                try:
                    re.compile(p)
                except re.error as exc:
                    raise ValueError(f"{submix}: invalid regular expression {p!r}: {exc}") from None
        return v

    @field_validator("system_message_weights")
    @classmethod
    def _weights(cls, v: dict[str, dict[int, float]]) -> dict[str, dict[int, float]]:
        for submix, w in v.items():
            if not w or any(x < 0 for x in w.values()) or sum(w.values()) <= 0:
                raise ValueError(f"{submix}: weights must be >= 0 with a positive sum")
        return v


def load_recipe(path: str | Path) -> dict[str, int]:
    """Read a recipe file's per-submix budgets."""
    path = Path(path)
    data = read_document(path, what="recipe file", error=ParamsError)
    budgets = (data or {}).get("budgets")
    if not isinstance(budgets, dict) or not budgets:
        raise ParamsError(f"{path}: recipe needs a 'budgets' mapping of submix to prompt count")
    unknown = sorted(set(budgets) - set(SUBMIXES))
    if unknown:
        raise ParamsError(f"{path}: budgets name unknown submixes {unknown} (known: {list(SUBMIXES)})")
    if any(not isinstance(n, int) or n < 0 for n in budgets.values()):
        raise ParamsError(f"{path}: budgets must be non-negative integers")
    return {s: int(budgets.get(s, 0)) for s in SUBMIXES}


def resolve_budgets(cfg: PromptsConfig) -> dict[str, int]:
    """Recipe budgets × `budget_scale`, then per-submix overrides from `budgets`."""
    recipe = load_recipe(cfg.recipe)
    out = {s: round(n * cfg.budget_scale) for s, n in recipe.items()}
    out.update(cfg.budgets)
    return out
