"""The `traces` run: every (prompt, teacher) pair becomes a trace row or a recorded removal.

Per teacher, prompts not yet in the generation cache go to it through the generation library's loop
(`builders.generation.loop.generate`: cached as they arrive, a failure-rate guard, a budget); then
the trace table is written from the prompts and the cache. The stage's entry
(`builders/traces/__main__.py`) calls `run_traces`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from builders.generation.api import ApiTeacher
from builders.generation.base import PROMPT_TOO_LONG, GenRequest
from builders.generation.budget import BudgetReached
from builders.generation.cache import GenerationCache
from builders.generation.keys import cache_keys, request_seeds, selected_mask
from builders.generation.loop import (
    BackendFactory,
    count_prompt_tokens,
    load_tokenizer,
    send,
    teacher_budget,
    teacher_revision,
)
from builders.generation.provenance import vllm_version
from builders.generation.registry import TeacherConfig, make_backend
from builders.traces.config import TracesConfig
from builders.traces.tables import (
    REMOVED_COLUMNS,
    STAGE,
    TeacherPlan,
    TeacherRelease,
    TeacherRun,
    check_prompts,
    open_prompts,
    prompt_batches,
    write_traces,
)
from core.chat import build_messages
from core.contracts import Funnel, TeacherRecord
from core.io import ParquetTable, write_json, write_parquet
from core.schema import REMOVED_SCHEMA, fields

logger = logging.getLogger(__name__)

REMOVED_TRACES_SCHEMA = pa.schema([*REMOVED_SCHEMA, *fields("teacher")])


def plan_teachers(
    source: ParquetTable, teachers: list[TeacherConfig], cache: GenerationCache, seed: int
) -> list[tuple[TeacherPlan, pl.DataFrame]]:
    """Per teacher (one pass over the prompts): its selected prompts with their cache keys, and
    those not cached yet (id, _key)."""
    start = time.perf_counter()
    revisions = [teacher_revision(t) for t in teachers]
    frames: list[list[pl.DataFrame]] = [[] for _ in teachers]
    for batch in prompt_batches(source, ["id", "system_prompt", "question"]):
        for t, revision, out in zip(teachers, revisions, frames, strict=True):
            chosen = batch.filter(selected_mask(batch["id"], t.fraction, seed))
            key = cache_keys(chosen, t.model, revision, t.sampling).alias("_key")
            out.append(chosen.select("id").with_columns(key))
    cached = cache.keys().implode()
    plans = []
    for t, revision, out in zip(teachers, revisions, frames, strict=True):
        keys = pl.concat(out) if out else pl.DataFrame(schema={"id": pl.String, "_key": pl.String})
        todo = keys.filter(~pl.col("_key").is_in(cached))
        plans.append((TeacherPlan(teacher=t, revision=revision, keys=keys), todo))
        logger.info(
            "teacher %s: %d prompts selected, %d cached, %d to generate",
            t.name,
            keys.height,
            keys.height - todo.height,
            todo.height,
        )
    logger.info("planned in %.1fs (cache keys of every prompt, cached keys)", time.perf_counter() - start)
    return plans


def iter_requests(
    source: ParquetTable,
    todo: pl.DataFrame,
    plan: TeacherPlan,
    cfg: TracesConfig,
    too_long: list[pl.DataFrame],
) -> Iterator[GenRequest]:
    """Requests for the `todo` prompts, a batch at a time; the removed rows of prompts too long for
    the teacher's context go to `too_long` instead (a frame as each batch ends)."""
    teacher = plan.teacher
    tokenizer = load_tokenizer(teacher)
    wanted = todo["id"].implode()
    rows: list[dict[str, str]] = []
    for batch in prompt_batches(source, ["id", "system_prompt", "question"]):
        batch = batch.filter(pl.col("id").is_in(wanted)).join(todo, on="id")
        if not batch.height:
            continue
        convs = [build_messages(s, q) for s, q in zip(batch["system_prompt"], batch["question"], strict=True)]
        counts = count_prompt_tokens(tokenizer, convs) if tokenizer is not None else [0] * batch.height
        seeds = request_seeds(teacher.sampling.seed, batch["id"])
        for pid, key, conv, n, seed in zip(batch["id"], batch["_key"], convs, counts, seeds, strict=True):
            if tokenizer is not None and n + cfg.min_new_tokens > teacher.max_model_len:
                detail = f"{n} prompt tokens + {cfg.min_new_tokens} > max_model_len {teacher.max_model_len}"
                rows.append({"id": pid, "stage": STAGE, "reason": PROMPT_TOO_LONG, "detail": detail})
                continue
            max_tokens = teacher.sampling.max_tokens
            if tokenizer is not None:
                max_tokens = min(max_tokens, teacher.max_model_len - n)
            yield GenRequest(key, pid, conv, max_tokens, seed, n if tokenizer is not None else None)
        if rows:
            too_long.append(pl.DataFrame(rows, schema=REMOVED_COLUMNS))
            rows = []


def run_teacher(
    source: ParquetTable,
    plan: TeacherPlan,
    todo: pl.DataFrame,
    cfg: TracesConfig,
    cache: GenerationCache,
    backend_factory: BackendFactory,
) -> TeacherRun:
    """Send one teacher the prompts it has not answered yet (`todo`): what that gave (its budget is
    `stopped` when it held requests back)."""
    teacher = plan.teacher
    cached = plan.keys.filter(~pl.col("_key").is_in(todo["_key"].implode()))["_key"]
    budget = teacher_budget(teacher, cache, cached)
    too_long: list[pl.DataFrame] = [pl.DataFrame(schema=REMOVED_COLUMNS)]
    requests = iter_requests(source, todo, plan, cfg, too_long) if todo.height else iter(())
    # no engine is started when every prompt is too long
    done = send(requests, todo.height, teacher, cfg, cache, plan.revision, budget, backend_factory)
    wall = max(done.wall_s, 1e-9)
    removed = pl.concat(too_long)
    sent = budget.admitted if budget is not None else todo.height - removed.height
    total = done.prompt_tokens + done.completion_tokens
    figures = {  # this run only (how much was cached before it depends on earlier runs): run.json
        "cached_before_run": plan.keys.height - todo.height,
        "sent": sent,
        "prompt_tokens": done.prompt_tokens,
        "completion_tokens": done.completion_tokens,
        "wall_time_s": round(wall, 3),
        "completion_tokens_per_s": round(done.completion_tokens / wall, 3) if sent else None,
        "total_tokens_per_s": round(total / wall, 3) if sent else None,
        **done.figures,
    }
    if budget is not None:
        figures.update(
            cost=round(budget.spent, 6), spent_total=round(budget.total, 6), max_cost=budget.max_cost
        )
        logger.info("teacher %s: %s", teacher.name, budget.line())
    return TeacherRun(too_long=removed, errors=done.errors, budget=budget, figures=figures)


def teacher_meta(plan: TeacherPlan, release: TeacherRelease) -> dict[str, Any]:
    """meta/<teacher>.json: the teacher's model, revision, sampling, token totals and (an API teacher)
    the model names its released rows were served under."""
    t = plan.teacher
    return TeacherRecord(
        teacher=t.name,
        model=t.model,
        revision=plan.revision,
        requested_revision=t.revision,
        backend=t.backend,
        vllm_version=vllm_version(),
        sampling=t.sampling.model_dump(mode="json"),
        max_model_len=t.max_model_len,
        fraction=t.fraction,
        prompt_tokens_total=release.prompt_tokens,
        completion_tokens_total=release.completion_tokens,
        price=t.price.resolved() if isinstance(t, ApiTeacher) and t.price else None,
        priced_at=t.PRICED_AT if isinstance(t, ApiTeacher) and t.price else None,
        served_models=sorted(release.served_models) if isinstance(t, ApiTeacher) else None,
    ).dump()


def run_traces(
    prompts: pl.DataFrame | Path,
    cfg: TracesConfig,
    seed: int,
    out_dir: str | Path,
    cache_dir: str | Path,
    backend_factory: BackendFactory | None = None,
    source: str = "prompts",
) -> dict[str, Any]:
    """Run every teacher and write traces.parquet, removed.parquet, stats.json, meta/<teacher>.json
    (all a function of the data) and run.json (what this run sent, its tokens and wall time).
    `prompts` is the prompt table's Parquet file (read a batch at a time) or a frame."""
    out_dir = Path(out_dir)
    with contextlib.ExitStack() as stack:
        table = stack.enter_context(open_prompts(prompts))
        prompts_in = check_prompts(table, source)
        # one writer: a second run waits, then stops
        cache = stack.enter_context(GenerationCache(cache_dir, lock=True))
        factory = backend_factory or (lambda teacher: make_backend(teacher, cache.root))
        planned = plan_teachers(table, cfg.teachers, cache, seed)
        runs = [(plan, run_teacher(table, plan, todo, cfg, cache, factory)) for plan, todo in planned]
        stops = [
            r.budget.reached(todo.height - r.too_long.height - r.budget.admitted)
            for (_, r), (_, todo) in zip(runs, planned, strict=True)
            if r.budget is not None and r.budget.stopped
        ]
        if stops:  # every teacher ran as far as its budget allows; nothing is released
            raise stops[0] if len(stops) == 1 else BudgetReached(" | ".join(str(e) for e in stops))
        removed, released = write_traces(table, runs, cache, cfg, out_dir / "traces.parquet")
    plans = [plan for plan, _ in planned]
    per_teacher = {}
    for plan, release in zip(plans, released, strict=True):
        mine = removed.filter(pl.col("teacher") == plan.teacher.name)
        per_teacher[plan.teacher.name] = {
            "prompts_selected": plan.keys.height,
            "rows_out": release.rows_out,
            "removed": dict(sorted(mine.group_by("reason").len().iter_rows())),
        }
    rows_out = sum(r.rows_out for r in released)
    counts = dict(sorted(removed.group_by("reason").len().iter_rows()))
    stats = {
        "funnel": Funnel(
            stage=STAGE, rows_in=sum(p.keys.height for p in plans), rows_out=rows_out, removed=counts
        ).dump(),
        "funnel_unit": "(prompt, teacher) pairs",
        "prompts_in": prompts_in,
        "teachers": per_teacher,
    }
    write_parquet(removed, out_dir / "removed.parquet", REMOVED_TRACES_SCHEMA)
    for plan, release in zip(plans, released, strict=True):
        write_json(teacher_meta(plan, release), out_dir / "meta" / f"{plan.teacher.name}.json")
    write_json(stats, out_dir / "stats.json")
    write_json({"teachers": {p.teacher.name: dict(r.figures) for p, r in runs}}, out_dir / "run.json")
    return stats
