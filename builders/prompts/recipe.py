"""The prompts recipe: FLAN-v2 rows → Orca-style prompts (zero-shot, stratified, system messages).

Budgets per submix come from the recipe file (Orca's) scaled by params; rows are sampled per task,
whole tasks are held out for evaluation, and every rejected row is kept with its reason. The
`prompts` stage (`builders/prompts/__main__.py`) runs `write_prompts`, which streams: source files are read
in parallel and spilled by bucket of tasks, each bucket sampled on its own
(`builders.prompts.buckets`), and the outputs written from spills one id range at a time, so memory
follows a bucket and a batch, not the source or the sample.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from builders.prompts.buckets import (
    EXCLUDED,
    POOLS,
    Outputs,
    SampleJob,
    SampleSummary,
    ScanJob,
    count_bucket,
    part_of,
    plan_buckets,
    sample_bucket,
    scan_file,
    spilled,
)
from builders.prompts.config import PromptsConfig, resolve_budgets
from builders.prompts.flan_source import SourceFiles, resolve_source, template_of
from builders.prompts.sampling import allocate, pool_rngs
from builders.prompts.system_messages import SystemMessage, check_weights, load_system_messages
from core.contracts import Funnel
from core.errors import ParamsError
from core.io import read_parquet, remove_stale_temps, write_json, write_parquet_frames
from core.parallel import ProcessPool
from core.schema import PROMPT_SCHEMA, REMOVED_SCHEMA, SUBMIXES, fields

logger = logging.getLogger(__name__)

BUCKET_BYTES = 256 << 20  # uncompressed source bytes per bucket of tasks (what a worker holds)
PARTS_PER_BUCKET = 8  # spill parts per bucket: tasks hashed to parts, parts placed by size
MAX_PARTS = 4096  # at most this many spill files per source file
REMOVED_PROMPTS_SCHEMA = pa.schema([*REMOVED_SCHEMA, *fields("submix task_name?")])


def bucket_count(source: SourceFiles, submix: str, template_types: list[str], bucket_bytes: int) -> int:
    """Buckets for a submix: its files' uncompressed size (Parquet footers) over `bucket_bytes`.

    Files of an Open-Orca/FLAN template folder not asked for spill nothing and are not counted.
    A file whose footer cannot be read counts as empty here; reading it fails with its name later.
    """
    total = 0
    for path in source.files.get(submix, []):
        folder = template_of(path.parent.name)
        if source.layout == "openorca" and folder is not None and folder not in template_types:
            continue
        try:
            meta = pq.ParquetFile(path).metadata
        except (pa.ArrowException, OSError):
            continue
        total += sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    return max(1, math.ceil(total / bucket_bytes))


def plan_pools(
    counts: pl.DataFrame, submix: str, budget: int, cfg: PromptsConfig, seed: int
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Each task's pool, first position in its pool's rank stream and number of rows to give.

    `counts` holds each task's distinct rows. Tasks matching `exclude_tasks` are excluded, those
    in `heldout_tasks` form the held-out pool (`heldout_per_task` each), the rest the training pool
    (`budget`, at most `max_per_task` each). Within a pool tasks are in name order, as are the rows
    its rank stream is laid over. Returns (task_name, pool, offset, take) and the pools' figures.
    """
    tasks = counts.sort("task_name")
    patterns = cfg.exclude_tasks.get(submix, [])
    excluded = (
        pl.col("task_name").str.contains("|".join(f"(?:{p})" for p in patterns))
        if patterns
        else pl.lit(False)
    )
    pool = (
        pl.when(excluded)
        .then(pl.lit(EXCLUDED))
        .when(pl.col("task_name").is_in(cfg.heldout_tasks))
        .then(pl.lit("heldout"))
        .otherwise(pl.lit("train"))
    )
    tasks = tasks.with_columns(pool.alias("pool")).with_columns(
        (pl.col("rows").cum_sum().over("pool") - pl.col("rows")).alias("offset")
    )
    take = np.zeros(tasks.height, dtype=np.int64)
    pools = tasks["pool"].to_numpy()
    rows = tasks["rows"].to_numpy().astype(np.int64)
    held = np.flatnonzero(pools == "heldout")
    train = np.flatnonzero(pools == "train")
    for idx, cap, want, purpose in (
        (held, cfg.heldout_per_task, cfg.heldout_per_task * held.size, POOLS["heldout"]),
        (train, cfg.max_per_task, budget, POOLS["train"]),
    ):
        if idx.size and want > 0:
            counts_ = np.minimum(rows[idx], cap) if cap is not None else rows[idx]
            take[idx] = allocate(counts_, want, pool_rngs(seed, submix, purpose)[1])
    tasks = tasks.with_columns(pl.Series("take", take))
    figures = {
        "available": int(rows[train].sum()),
        "sampled": int(take[train].sum()),
        "tasks_available": int(train.size),
        "tasks_sampled": int((take[train] > 0).sum()),
        "heldout_tasks": int(held.size),
        "heldout_rows": int(take[held].sum()),
        "heldout_pool": int(rows[held].sum()),
    }
    return tasks.select("task_name", "pool", "offset", "take"), figures


@dataclass
class Tally:
    """What the stage's stats count over the rows it writes."""

    rows_per_submix: Counter = field(default_factory=Counter)
    tasks: dict[str, set[str]] = field(default_factory=dict)
    per_message: dict[str, Counter] = field(default_factory=dict)
    heldout_tasks: set[str] = field(default_factory=set)
    heldout_rows: int = 0
    removed: Counter = field(default_factory=Counter)

    def add(self, submix: str, summary: SampleSummary) -> None:
        if summary.per_message:
            self.rows_per_submix[submix] += sum(summary.per_message.values())
            self.tasks.setdefault(submix, set()).update(summary.tasks)
            self.per_message.setdefault(submix, Counter()).update(summary.per_message)
        self.heldout_tasks.update(summary.heldout_tasks)
        self.heldout_rows += summary.heldout_rows
        self.removed.update(summary.removed)


def run_submix(
    pool: ProcessPool,
    files: SourceFiles,
    submix: str,
    budget: int,
    cfg: PromptsConfig,
    seed: int,
    messages: dict[int, SystemMessage],
    work: Path,
    outputs: Outputs,
    tally: Tally,
) -> dict[str, Any]:
    """Scan, count and sample one submix into the output spills (`outputs` is this process's
    writer); returns its figures for stats.json."""
    paths = files.files.get(submix, [])
    buckets = bucket_count(files, submix, cfg.template_types, BUCKET_BYTES)
    parts = min(buckets * PARTS_PER_BUCKET, MAX_PARTS)
    scans = [
        ScanJob(
            str(p),
            files.relative(submix, p),
            submix,
            tuple(cfg.template_types),
            parts,
            str(work / f"f{i:06d}"),
        )
        for i, p in enumerate(paths)
    ]
    rows_read, skipped = 0, Counter()
    for res in tqdm(
        pool.imap(scan_file, scans, ordered=False), total=len(scans), desc=f"{submix}: read", leave=False
    ):
        rows_read += res.rows
        skipped.update(res.skipped)
        outputs.add("removed", res.faults)
        tally.removed.update(dict(res.faults.group_by("reason").len().iter_rows()))
    roots = tuple(s.spill for s in scans)
    jobs = plan_buckets(roots, BUCKET_BYTES)
    counted = list(pool.imap(count_bucket, jobs, ordered=False))
    counts = (
        pl.concat(counted) if counted else pl.DataFrame(schema={"task_name": pl.String, "rows": pl.UInt32})
    )
    tasks, figures = plan_pools(counts, submix, budget, cfg, seed)
    bucket_of = {part: job.name for job in jobs for part in job.parts}
    by_bucket = tasks.with_columns(
        pl.Series(
            "_key", [bucket_of[part_of(t, parts)] for t in tasks["task_name"].to_list()], dtype=pl.String
        )
    )
    detail = f"matches prompts.exclude_tasks.{submix}"
    samples = [
        SampleJob(
            job,
            submix,
            seed,
            by_bucket.filter(pl.col("_key") == job.name).drop("_key"),
            detail,
            cfg.system_message_weights,
            messages,
            str(outputs.root),
        )
        for job in jobs
    ]
    for res in tqdm(
        pool.imap(sample_bucket, samples, ordered=False),
        total=len(samples),
        desc=f"{submix}: sample",
        leave=False,
    ):
        tally.add(submix, res)
    shutil.rmtree(work, ignore_errors=True)
    stats = {
        "budget": budget,
        "available": figures["available"],
        "sampled": figures["sampled"],
        "shortfall": max(0, budget - figures["sampled"]),
        "tasks_available": figures["tasks_available"],
        "tasks_sampled": figures["tasks_sampled"],
        "heldout_tasks": figures["heldout_tasks"],
        "heldout_rows": figures["heldout_rows"],
        "heldout_unused": figures["heldout_pool"] - figures["heldout_rows"],
        "not_sampled": figures["available"] - figures["sampled"],
        "template_types_skipped": dict(sorted(skipped.items())),
        "rows_read": rows_read,
    }
    logger.info("%s: %d sampled of %d available (budget %d; %d rows read, %d buckets)", submix,
                stats["sampled"], stats["available"], budget, rows_read, len(jobs))  # fmt: skip
    return stats


def _in_order(root: Path, kind: str) -> Iterator[pl.DataFrame]:
    """One output's spilled rows in its order: by id; removed rows by reason, submix and id."""
    by = ["id", "detail", "task_name"] if kind == "removed" else ["id"]
    for _, df in spilled(root, kind):
        yield df.sort(by, nulls_last=True)


def prepare(cfg: PromptsConfig) -> tuple[dict[int, SystemMessage], dict[str, int], list[str], SourceFiles]:
    """(system messages, budgets, submixes with a budget, their source files), params checked."""
    messages = load_system_messages(cfg.system_messages)
    check_weights(cfg.system_message_weights, messages, "params")
    budgets = resolve_budgets(cfg)
    wanted = [s for s in SUBMIXES if budgets.get(s, 0) > 0]
    missing = [s for s in wanted if s not in cfg.system_message_weights]
    if missing:
        raise ParamsError(f"params: prompts.system_message_weights lacks submixes {missing}")
    if not wanted:
        raise ParamsError("params: every submix budget is 0; nothing to sample")
    return (
        messages,
        budgets,
        wanted,
        resolve_source(cfg.source, wanted, cfg.template_types, cfg.source_revision),
    )


def write_prompts(cfg: PromptsConfig, seed: int, out: Path) -> dict[str, Any]:
    """Run the stage: write prompts, heldout and removed Parquet files and stats.json to `out`."""
    messages, budgets, wanted, files = prepare(cfg)
    logger.info(
        "source %s (%s layout): %s", cfg.source, files.layout, {s: len(f) for s, f in files.files.items()}
    )
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out, ".spill")
    tally = Tally()
    with (
        tempfile.TemporaryDirectory(prefix=f".spill.{os.getpid()}.", suffix=".tmp", dir=out) as tmp,
        ProcessPool(cfg.workers) as pool,
    ):
        outputs = Outputs(Path(tmp) / "out", "stage")
        per_submix = {
            s: run_submix(pool, files, s, budgets[s], cfg, seed, messages, Path(tmp) / s, outputs, tally)
            for s in wanted
        }
        pool.close()
        outputs.close()
        root = outputs.root
        n_prompts = write_parquet_frames(_in_order(root, "prompts"), out / "prompts.parquet", PROMPT_SCHEMA)
        write_parquet_frames(_in_order(root, "heldout"), out / "heldout.parquet", PROMPT_SCHEMA)
        write_parquet_frames(_in_order(root, "removed"), out / "removed.parquet", REMOVED_PROMPTS_SCHEMA)
    stats = prompt_stats(cfg, files, budgets, per_submix, tally, n_prompts)
    write_json(stats, out / "stats.json")
    logger.info("wrote %d prompts, %d held-out, %d removed to %s", n_prompts, tally.heldout_rows,
                sum(tally.removed.values()), out)  # fmt: skip
    return stats


def prompt_stats(
    cfg: PromptsConfig,
    files: SourceFiles,
    budgets: dict[str, int],
    per_submix: dict[str, dict[str, Any]],
    tally: Tally,
    n_prompts: int,
) -> dict[str, Any]:
    """stats.json: the funnel, the source, budgets and what each submix gave."""
    no_data = [s for s, st in per_submix.items() if st["rows_read"] == 0]
    if no_data:
        logger.warning(
            "submixes %s have a budget but no data in %s (a misnamed folder?); their budget goes unused",
            no_data,
            cfg.source,
        )
    funnel = {"template_type": sum(sum(s["template_types_skipped"].values()) for s in per_submix.values())}
    funnel.update(tally.removed)
    funnel["heldout_task"] = sum(s["heldout_rows"] + s["heldout_unused"] for s in per_submix.values())
    funnel["not_sampled"] = sum(s["not_sampled"] for s in per_submix.values())
    funnel = {k: v for k, v in sorted(funnel.items()) if v}
    rows_in = sum(s["rows_read"] for s in per_submix.values())
    messages = Counter()
    for c in tally.per_message.values():
        messages.update(c)
    stats: dict[str, Any] = {
        "funnel": Funnel(stage="prompts", rows_in=rows_in, rows_out=n_prompts, removed=funnel).dump(),
        "source": {"source": cfg.source, "layout": files.layout, "revision": files.revision or None},
        "budgets": budgets,
        "per_submix": per_submix,
        "rows_per_submix": dict(sorted(tally.rows_per_submix.items())),
        "tasks_per_submix": {s: len(t) for s, t in sorted(tally.tasks.items())},
        "rows_per_system_message": _keyed(messages),
        "rows_per_submix_and_system_message": {s: _keyed(c) for s, c in sorted(tally.per_message.items())},
        "shortfall": {s: st["shortfall"] for s, st in per_submix.items()},
        "submixes_without_data": no_data,
        "heldout": {"tasks": sorted(tally.heldout_tasks), "rows": tally.heldout_rows},
    }
    unknown_heldout = sorted(set(cfg.heldout_tasks) - tally.heldout_tasks)
    if unknown_heldout:
        stats["heldout"]["not_found"] = unknown_heldout
        logger.warning("held-out tasks not found in the sampled submixes: %s", unknown_heldout)
    return stats


def _keyed(counts: Counter) -> dict[str, int]:
    return {str(k): n for k, n in sorted(counts.items())}


def build_prompts(cfg: PromptsConfig, seed: int) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, dict]:
    """The stage's outputs as frames (prompts, heldout, removed, stats), written to a temp folder
    and read back: for tests and small sources."""
    with tempfile.TemporaryDirectory(prefix="prompts-") as d:
        stats = write_prompts(cfg, seed, Path(d))
        frames = [read_parquet(Path(d) / f"{name}.parquet") for name in ("prompts", "heldout", "removed")]
    return frames[0], frames[1], frames[2], stats
