"""The prompt table read in batches (`core.io.ParquetTable`), the frozen values a run hands on, and
the trace table written from the prompts and the cache in batches (`core.io.TableWriter`).

Memory holds one batch of prompts and its cached answers, plus per teacher the (id, key) column of
its selected prompts, whatever the size of the corpus: prompts are read a row group at a time from
Parquet, answers are looked up per id range (cache files are sorted by id), and `traces.parquet` is
written a row group per batch.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from builders.generation.base import GenError
from builders.generation.budget import Budget
from builders.generation.cache import GenerationCache
from builders.generation.registry import TeacherConfig
from builders.traces.config import TracesConfig
from builders.traces.filters import response_problems
from core.errors import InputError, PipelineError
from core.io import BATCH_ROWS, ParquetTable, TableWriter, plain_strings
from core.schema import LONG_TEXT, TRACE_FIELDS

REQUIRED_COLUMNS = ("id", "system_prompt", "question")
STAGE = "traces"
REMOVED_COLUMNS = {"id": pl.String, "stage": pl.String, "reason": pl.String, "detail": pl.String}


@contextlib.contextmanager
def open_prompts(prompts: pl.DataFrame | Path, name: str = "prompts") -> Iterator[ParquetTable]:
    """The prompt table as a `ParquetTable` (a frame, as tests pass it, is written to a temporary
    file first), its contract checked (`check_prompts`)."""
    if isinstance(prompts, pl.DataFrame):
        with tempfile.TemporaryDirectory(prefix="prompts-") as tmp:
            path = Path(tmp) / "prompts.parquet"
            prompts.write_parquet(path)
            yield ParquetTable(path)
    else:
        yield ParquetTable(prompts)


def prompt_batches(table: ParquetTable, columns: list[str]) -> Iterator[pl.DataFrame]:
    """The prompt table's `columns`, `BATCH_ROWS` rows at a time, in table order."""
    return table.batches(columns, BATCH_ROWS)


def check_prompts(table: ParquetTable, name: str) -> int:
    """Required columns present, ids unique, non-null and sorted, no null text; the row count."""
    missing = [c for c in REQUIRED_COLUMNS if c not in table.names]
    if missing:
        raise InputError(f"{name}: missing columns {missing}")
    parts = [b["id"] for b in prompt_batches(table, ["id"])]
    ids = pl.concat(parts) if parts else pl.Series("id", [], dtype=pl.String)
    if ids.null_count() or ids.n_unique() != len(ids):
        raise InputError(f"{name}: column 'id' has nulls or duplicates")
    if not ids.is_sorted():
        raise InputError(f"{name}: rows are not sorted by id (the prompt table contract)")
    for col in ("system_prompt", "question"):
        if table.null_count(col):
            raise InputError(f"{name}: column '{col}' has nulls")
    return len(ids)


@dataclass(frozen=True)
class TeacherPlan:
    """One teacher's part of the run, fixed before anything is sent: its selected prompts' keys."""

    teacher: TeacherConfig
    revision: str
    keys: pl.DataFrame  # id, _key of the selected prompts, sorted by id


@dataclass(frozen=True)
class TeacherRun:
    """What sending a teacher its uncached prompts gave: the prompts too long for its context, the
    requests that failed, its budget (None without a price) and this run's figures (run.json)."""

    too_long: pl.DataFrame  # removed rows (prompt_too_long) of this run
    errors: Mapping[str, GenError]  # by cache key
    budget: Budget | None
    figures: Mapping[str, Any]


@dataclass(frozen=True)
class TeacherRelease:
    """What the trace table holds of one teacher: rows, their tokens, the model names they came under."""

    rows_out: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    served_models: frozenset[str] = frozenset()

    def __add__(self, other: TeacherRelease) -> TeacherRelease:
        return TeacherRelease(
            self.rows_out + other.rows_out,
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.served_models | other.served_models,
        )


def _id_range(keys: pl.DataFrame, first: str, last: str) -> pl.DataFrame:
    ids = keys["id"]
    lo = int(ids.search_sorted(first, side="left"))
    hi = int(ids.search_sorted(last, side="right"))
    return keys.slice(lo, hi - lo)


def _teacher_batch(
    plan: TeacherPlan, run: TeacherRun, batch: pl.DataFrame, cache: GenerationCache, cfg: TracesConfig
) -> tuple[pl.DataFrame, pl.DataFrame, TeacherRelease]:
    """(trace rows, removed rows, what they release) of one teacher for one batch of prompts."""
    first, last = batch["id"][0], batch["id"][-1]
    keys = _id_range(plan.keys, first, last)
    keys = keys.join(run.too_long.select("id"), on="id", how="anti")
    found = cache.lookup(keys["_key"], first, last)
    joined = keys.join(
        found.select(
            "key", "response", "finish_reason", "prompt_tokens", "completion_tokens", "served_model"
        ),
        left_on="_key",
        right_on="key",
        how="left",
    )
    failed = joined.filter(pl.col("_key").is_in(pl.Series(list(run.errors), dtype=pl.String).implode()))
    missing = joined.filter(pl.col("response").is_null()).join(failed.select("id"), on="id", how="anti")
    if missing.height:
        raise PipelineError(
            f"teacher {plan.teacher.name}: {missing.height} prompts have no result (e.g. {missing['id'][0]})"
        )
    errors = [run.errors[k] for k in failed["_key"]]
    removed_errors = pl.DataFrame(
        {
            "id": [e.id for e in errors],
            "reason": [e.reason for e in errors],
            "detail": [e.detail for e in errors],
        },
        schema={"id": pl.String, "reason": pl.String, "detail": pl.String},
    )
    answered = joined.filter(pl.col("response").is_not_null())
    answered = pl.concat([answered, response_problems(answered, cfg)], how="horizontal")
    removed = pl.concat(
        [removed_errors, answered.filter(pl.col("reason").is_not_null()).select(removed_errors.columns)]
    )
    kept = answered.filter(pl.col("reason").is_null()).drop("_key", "reason", "detail")
    served = frozenset(kept["served_model"].drop_nulls().unique().to_list())
    kept = kept.drop("served_model")
    rows = batch.join(kept, on="id", how="inner").with_columns(
        pl.lit(plan.teacher.name).alias("teacher"), pl.lit(plan.teacher.model).alias("teacher_model")
    )
    release = TeacherRelease(
        rows.height, int(answered["prompt_tokens"].sum()), int(answered["completion_tokens"].sum()), served
    )
    return rows, removed.with_columns(pl.lit(plan.teacher.name).alias("teacher")), release


def write_traces(
    source: ParquetTable,
    runs: list[tuple[TeacherPlan, TeacherRun]],
    cache: GenerationCache,
    cfg: TracesConfig,
    out: Path,
) -> tuple[pl.DataFrame, list[TeacherRelease]]:
    """Write `out` (traces.parquet, sorted by id then teacher) a batch at a time: the prompt table's
    columns (large strings as strings) and the trace columns; (the removed rows, what each teacher
    released)."""
    schema = plain_strings(source.schema, TRACE_FIELDS, keep_nullable=False)
    removed = [
        r.too_long.with_columns(pl.lit(p.teacher.name).alias("teacher")).select(*REMOVED_COLUMNS, "teacher")
        for p, r in runs
    ]
    released = [TeacherRelease() for _ in runs]
    with TableWriter(out, schema, long_text=LONG_TEXT) as writer:  # a dictionary of answers: never
        for batch in prompt_batches(source, source.names):
            frames = []
            for k, (plan, run) in enumerate(runs):
                rows, rem, release = _teacher_batch(plan, run, batch, cache, cfg)
                frames.append(rows)
                released[k] += release
                removed.append(
                    rem.with_columns(pl.lit(STAGE).alias("stage")).select(*REMOVED_COLUMNS, "teacher")
                )
            rows = pl.concat(frames, how="vertical_relaxed").sort("id", "teacher")
            if rows.height:
                writer.write(rows)
    return pl.concat(removed).sort("id", "teacher", "reason"), released
