"""The `prompts` stage as it was written before it streamed: the whole submix in memory.

Kept as the oracle of `tests/test_prompts_stream.py`: the streaming stage must give the same rows,
byte for byte, for the same input. This is the earlier `read_submix`, `stratified_sample`,
`build_submix`, `finish` and `build_prompts`, unchanged but for the imports; the pieces both share
(the params checks, reading one file's batches, ids, removed rows, the allocation of a budget over
tasks, options, system messages) come from the library.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import numpy as np
import polars as pl

from builders.prompts.buckets import CONTENT_KEY, has_options, removed_rows
from builders.prompts.config import PromptsConfig
from builders.prompts.flan_source import FIELDS, SourceError, SourceFiles, read_batches
from builders.prompts.recipe import prepare
from builders.prompts.sampling import add_ids, allocate
from builders.prompts.system_messages import assign_system_messages
from core.contracts import Funnel
from core.schema import PROMPT_SCHEMA, SUBMIXES

logger = logging.getLogger(__name__)


def read_submix(
    source: SourceFiles, submix: str, template_types: Iterable[str]
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Read all files of a submix; keep rows of `template_types` (and faulty rows), count the rest."""
    if submix not in SUBMIXES:
        raise SourceError(f"unknown submix '{submix}' (known: {list(SUBMIXES)})")
    keep = list(template_types)
    frames, skipped = [], {}
    for path in source.files.get(submix, []):
        for df in read_batches(path, submix, source.relative(submix, path)):
            mask = df["fault"].is_not_null() | df["template_type"].is_in(keep)
            for t, n in df.filter(~mask).group_by("template_type").len().iter_rows():
                skipped[t] = skipped.get(t, 0) + n
            frames.append(df.filter(mask))
    empty = pl.DataFrame(
        schema={**{f: pl.String for f in FIELDS}, "fault": pl.String, "submix": pl.String, "file": pl.String}
    )
    return (pl.concat(frames) if frames else empty), dict(sorted(skipped.items()))


def stratified_sample(
    df: pl.DataFrame,
    budget: int,
    rng: np.random.Generator,
    max_per_task: int | None = None,
    order: Sequence[str] = ("task_name", "id"),
) -> pl.DataFrame:
    """Sample up to `budget` rows of one submix, stratified by `task_name`, deterministically."""
    if df.height == 0 or budget <= 0:
        return df.head(0)
    if order[0] != "task_name":
        raise ValueError("order must start with task_name")
    rank_rng, task_rng = rng.spawn(2)
    df = df.sort(list(order)).with_columns(pl.Series("_rank", rank_rng.random(df.height)))
    tasks = df.group_by("task_name", maintain_order=True).len()
    counts = tasks["len"].to_numpy().astype(np.int64)
    if max_per_task is not None:
        counts = np.minimum(counts, max_per_task)
    alloc = pl.DataFrame({"task_name": tasks["task_name"], "_take": allocate(counts, budget, task_rng)})
    return (
        df.join(alloc, on="task_name", how="left", maintain_order="left")
        .filter(pl.col("_rank").rank("ordinal").over("task_name") <= pl.col("_take"))
        .drop("_rank", "_take")
    )


def _rng(seed: int, submix: str, purpose: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, SUBMIXES.index(submix), purpose]))


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
        removed_rows(
            faulty,
            pl.col("fault").str.split(":").list.first(),
            pl.concat_str([pl.col("file"), pl.lit(": column "), pl.col("fault").str.split(":").list.last()]),
        )
    ]
    rows = raw.filter(pl.col("fault").is_null()).sort([*CONTENT_KEY, "reference"])
    first = rows.select(pl.struct(CONTENT_KEY).is_first_distinct()).to_series()
    removed.append(
        removed_rows(
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
        removed.append(
            removed_rows(excluded, "excluded_task", pl.lit(f"matches prompts.exclude_tasks.{submix}"))
        )
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
    messages, budgets, wanted, files = prepare(cfg)

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
        prompts.append(sample)
        heldout.append(held)
        removed.append(rem)
        per_submix[submix] = st

    no_data = [s for s in wanted if per_submix[s]["rows_read"] == 0]
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
    return prompts_df, heldout_df, removed_df, stats


def _counts(df: pl.DataFrame, col: str) -> dict[str, int]:
    return {str(k): n for k, n in df.group_by(col).len().sort(col).iter_rows()}
