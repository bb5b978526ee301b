"""The prompts recipe: FLAN-v2 rows → Orca-style prompts (zero-shot, stratified, system messages).

Budgets per submix come from the recipe file (Orca's) scaled by params; rows are sampled per task,
whole tasks are held out for evaluation, and every rejected row is kept with its reason. The
`prompts` stage (`builders/prompts.py`) writes what `build_prompts` returns.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
import pyarrow as pa
from pydantic import Field, field_validator

from answers.options import LISTS_OPTIONS
from builders.flan_source import read_submix, resolve_source
from builders.sampling import add_ids, stratified_sample
from builders.system_messages import assign_system_messages, check_weights, load_system_messages
from core.config import ParamsError, StageConfig
from core.contracts import Funnel
from core.io import read_document, write_json, write_parquet
from core.schema import PROMPT_SCHEMA, REMOVED_SCHEMA, SUBMIXES, fields

logger = logging.getLogger(__name__)

Submix = Literal["cot", "niv2", "t0", "flan2021", "dialog"]
TemplateType = Literal["zs_opt", "zs_noopt", "fs_opt", "fs_noopt"]

CONTENT_KEY = ["task_name", "template_type", "question"]
REMOVED_PROMPTS_SCHEMA = pa.schema([*REMOVED_SCHEMA, *fields("submix task_name?")])


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


def has_options(df: pl.DataFrame) -> pl.Series:
    """True for rows whose question lists answer options (`answers.options.LISTS_OPTIONS`, the
    checker's rule as one vectorised pattern); a `*_opt` template alone is not enough (FLAN's CoT
    and WebQuestions templates are all `zs_opt`, most of them list no options)."""
    return df["question"].str.contains(LISTS_OPTIONS).alias("has_options")


def _rng(seed: int, submix: str, purpose: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, SUBMIXES.index(submix), purpose]))


def _removed(df: pl.DataFrame, reason: pl.Expr | str, detail: pl.Expr) -> pl.DataFrame:
    reason_expr = pl.lit(reason) if isinstance(reason, str) else reason
    return df.select(
        pl.col("id"),
        pl.lit("prompts").alias("stage"),
        reason_expr.alias("reason"),
        detail.alias("detail"),
        pl.col("submix"),
        pl.col("task_name"),
    )


def build_submix(
    raw: pl.DataFrame, submix: str, budget: int, cfg: PromptsConfig, seed: int
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, dict]:
    """Sample one submix: returns (prompts, heldout, removed rows, stats)."""
    raw = raw.rename({"inputs": "question", "targets": "reference"})
    faulty = raw.filter(pl.col("fault").is_not_null())
    complete = pl.all_horizontal(pl.col(c).is_not_null() for c in ("task_name", "template_type", "question"))
    faulty = pl.concat(
        [
            add_ids(faulty.filter(complete)),
            faulty.filter(~complete).with_columns(pl.lit(None, pl.String).alias("id")),
        ],
        how="diagonal",
    )
    removed = [
        _removed(
            faulty,
            pl.col("fault").str.split(":").list.first(),
            pl.concat_str([pl.col("file"), pl.lit(": column "), pl.col("fault").str.split(":").list.last()]),
        )
    ]
    # Ids (sha256) are computed only for rows that leave the stage; order and duplicates use the
    # content key itself, which is what the id hashes.
    rows = raw.filter(pl.col("fault").is_null()).sort([*CONTENT_KEY, "reference"])
    first = rows.select(pl.struct(CONTENT_KEY).is_first_distinct()).to_series()
    removed.append(
        _removed(
            add_ids(rows.filter(~first)),
            "duplicate_id",
            pl.lit("same submix, task, template and inputs as a kept row"),
        )
    )
    rows = rows.filter(first)

    patterns = cfg.exclude_tasks.get(submix, [])
    if patterns:
        rx = "|".join(f"(?:{p})" for p in patterns)
        excluded = add_ids(rows.filter(pl.col("task_name").str.contains(rx)))
        removed.append(_removed(excluded, "excluded_task", pl.lit(f"matches prompts.exclude_tasks.{submix}")))
        rows = rows.filter(~pl.col("task_name").str.contains(rx))

    held_pool = rows.filter(pl.col("task_name").is_in(cfg.heldout_tasks))
    rows = rows.filter(~pl.col("task_name").is_in(cfg.heldout_tasks))
    heldout = stratified_sample(
        held_pool,
        cfg.heldout_per_task * held_pool["task_name"].n_unique(),
        _rng(seed, submix, 1),
        cfg.heldout_per_task,
        order=CONTENT_KEY,
    )
    sample = stratified_sample(rows, budget, _rng(seed, submix, 2), cfg.max_per_task, order=CONTENT_KEY)
    stats = {
        "budget": budget,
        "available": rows.height,
        "sampled": sample.height,
        "shortfall": max(0, budget - sample.height),
        "tasks_available": rows["task_name"].n_unique(),
        "tasks_sampled": sample["task_name"].n_unique(),
        "heldout_tasks": held_pool["task_name"].n_unique(),
        "heldout_rows": heldout.height,
        "heldout_unused": held_pool.height - heldout.height,
        "not_sampled": rows.height - sample.height,
    }
    return add_ids(sample), add_ids(heldout), pl.concat(removed, how="diagonal"), stats


def finish(df: pl.DataFrame, cfg: PromptsConfig, messages: dict, seed: int) -> pl.DataFrame:
    """Add `has_options` and a system message per row; sort by id."""
    if df.height == 0:
        return pl.DataFrame(schema=pl.Schema(PROMPT_SCHEMA))
    df = df.sort("id").with_columns(has_options(df.sort("id")))
    out = assign_system_messages(df, cfg.system_message_weights, messages, f"{seed}:system_message")
    return out.select(PROMPT_SCHEMA.names)


def build_prompts(cfg: PromptsConfig, seed: int) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, dict]:
    """Run the whole stage in memory: returns (prompts, heldout, removed, stats)."""
    messages = load_system_messages(cfg.system_messages)
    check_weights(cfg.system_message_weights, messages, "params")
    budgets = resolve_budgets(cfg)
    wanted = [s for s in SUBMIXES if budgets.get(s, 0) > 0]
    missing = [s for s in wanted if s not in cfg.system_message_weights]
    if missing:
        raise ParamsError(f"params: prompts.system_message_weights lacks submixes {missing}")
    if not wanted:
        raise ParamsError("params: every submix budget is 0; nothing to sample")
    files = resolve_source(cfg.source, wanted, cfg.template_types, cfg.source_revision)
    logger.info(
        "source %s (%s layout): %s", cfg.source, files.layout, {s: len(f) for s, f in files.files.items()}
    )

    prompts, heldout, removed, per_submix = [], [], [], {}
    funnel = {"template_type": 0}
    rows_in = 0
    for submix in wanted:
        raw, skipped = read_submix(files, submix, cfg.template_types)
        rows_in += raw.height + sum(skipped.values())
        funnel["template_type"] += sum(skipped.values())
        sample, held, rem, st = build_submix(raw, submix, budgets[submix], cfg, seed)
        st["template_types_skipped"] = skipped
        st["rows_read"] = raw.height + sum(skipped.values())
        logger.info(
            "%s: %d sampled of %d available (budget %d)", submix, st["sampled"], st["available"], st["budget"]
        )
        prompts.append(sample)
        heldout.append(held)
        removed.append(rem)
        per_submix[submix] = st

    no_data = [s for s in wanted if per_submix[s]["rows_read"] == 0]
    if no_data:
        logger.warning(
            "submixes %s have a budget but no data in %s (a misnamed folder?); their budget goes unused",
            no_data,
            cfg.source,
        )
    prompts_df = finish(pl.concat(prompts), cfg, messages, seed)
    heldout_df = finish(pl.concat(heldout), cfg, messages, seed)
    removed_df = pl.concat(removed).sort(["reason", "submix", "id"], nulls_last=True)

    for reason, n in removed_df.group_by("reason").len().iter_rows():
        funnel[reason] = n
    funnel["heldout_task"] = sum(s["heldout_rows"] + s["heldout_unused"] for s in per_submix.values())
    funnel["not_sampled"] = sum(s["not_sampled"] for s in per_submix.values())
    funnel = {k: v for k, v in sorted(funnel.items()) if v}
    stats = {
        "funnel": Funnel(stage="prompts", rows_in=rows_in, rows_out=prompts_df.height, removed=funnel).dump(),
        "source": {"source": cfg.source, "layout": files.layout, "revision": files.revision or None},
        "budgets": budgets,
        "per_submix": per_submix,
        "rows_per_submix": _counts(prompts_df, "submix"),
        "tasks_per_submix": {
            s: n
            for s, n in prompts_df.group_by("submix")
            .agg(pl.col("task_name").n_unique())
            .sort("submix")
            .iter_rows()
        },
        "rows_per_system_message": _counts(prompts_df, "system_prompt_id"),
        "rows_per_submix_and_system_message": {
            s: _counts(prompts_df.filter(pl.col("submix") == s), "system_prompt_id")
            for s in sorted(prompts_df["submix"].unique())
        },
        "shortfall": {s: st["shortfall"] for s, st in per_submix.items()},
        "submixes_without_data": no_data,
        "heldout": {"tasks": sorted(heldout_df["task_name"].unique().to_list()), "rows": heldout_df.height},
    }
    unknown_heldout = sorted(set(cfg.heldout_tasks) - set(heldout_df["task_name"].to_list()))
    if unknown_heldout:
        stats["heldout"]["not_found"] = unknown_heldout
        logger.warning("held-out tasks not found in the sampled submixes: %s", unknown_heldout)
    return prompts_df, heldout_df, removed_df, stats


def _counts(df: pl.DataFrame, col: str) -> dict[str, int]:
    return {str(k): n for k, n in df.group_by(col).len().sort(col).iter_rows()}


def write_outputs(
    out: Path, prompts: pl.DataFrame, heldout: pl.DataFrame, removed: pl.DataFrame, stats: dict
) -> None:
    """Write the stage's four outputs, each atomically."""
    write_parquet(prompts, out / "prompts.parquet", PROMPT_SCHEMA)
    write_parquet(heldout, out / "heldout.parquet", PROMPT_SCHEMA)
    write_parquet(removed, out / "removed.parquet", REMOVED_PROMPTS_SCHEMA)
    write_json(stats, out / "stats.json")
