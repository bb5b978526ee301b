"""Stage `verify` logic: every trace's final answer checked against its FLAN reference, streaming.

The trace table is read a row group at a time (`BATCH_ROWS` rows per batch): `answers.check.
check_frame` gives each row its answer kind, verdict and extracted answer, row groups checked in
`verify.workers` processes (each reads the four columns the checker needs from its row group and
sends back the verdict columns, which this process joins to the batch it reads, in file order, so
the output is the same bytes whatever the number of workers); with a judge, open rows
with a reference get the judge's verdict instead (`builders.verify.judge`: a first pass plans
the judging requests, a second sends those not cached yet, then the write pass reads the verdicts
back from the judge's cache). Rows go to `traces.parquet` (the trace columns plus `answer_kind`,
`answer_check`, `extracted_answer`) or, by the policy, to `removed.parquet` (`wrong_answer`,
`unverifiable_answer`, with the extracted and reference answers in `detail`), both written a
row group per batch. Memory holds one batch plus, with a judge, the (item, key) column of the rows
it judges.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from answers.check import VERDICTS, check_frame
from builders.generation.loop import BackendFactory
from builders.generation.registry import make_backend
from builders.verify.config import VerifyConfig
from builders.verify.judge import FAILED, JUDGED, TOO_LONG, UNPARSEABLE, Judge, JudgePrompt, item_id
from core.contracts import AnswerChecks, CheckCounts, Funnel, JudgeCounts
from core.errors import InputError
from core.io import BATCH_ROWS, ParquetTable, TableWriter, plain_strings, write_json
from core.parallel import ProcessPool
from core.schema import LONG_TEXT, REMOVED_SCHEMA, VERIFY_FIELDS, fields

logger = logging.getLogger(__name__)

STAGE = "verify"
REQUIRED = ("id", "teacher", "submix", "question", "reference", "response", "has_options")
CHECK_INPUT = ["question", "reference", "response", "has_options"]
JUDGE_INPUT = ["id", "teacher", "question", "reference", "response"]
WRONG_ANSWER, UNVERIFIABLE_ANSWER = "wrong_answer", "unverifiable_answer"
REMOVED_VERIFY_SCHEMA = pa.schema([*REMOVED_SCHEMA, *fields("teacher answer_kind")])
REPLY_CHARS = 300  # of a judge's reply kept in a removed row's detail
WHY = {  # why an answer could not be checked (detail of `unverifiable_answer`)
    "no_answer": "no final answer found in the response",
    "no_judge": "open answer, no judge configured",
    "no_reference": "open answer, empty reference",
    UNPARSEABLE: "the judge's reply has no verdict",
    TOO_LONG: "the judging prompt does not fit the judge's context",
    FAILED: "the judging request failed",
}
COUNT_KEYS = ["teacher", "submix", "answer_kind", "answer_check"]


def open_traces(path: Path) -> ParquetTable:
    """The trace table to check: the columns the checker needs, and not checked before."""
    table = ParquetTable(path, required=REQUIRED)
    present = [f.name for f in VERIFY_FIELDS if f.name in table.names]
    if present:
        raise InputError(f"{path}: already has the columns {present} (verified twice?)")
    return table


def checked_batches(
    table: ParquetTable, pool: ProcessPool, columns: list[str] | None = None
) -> Iterator[tuple[pl.DataFrame, pl.DataFrame]]:
    """(batch, its `check_frame` columns) in file order, `BATCH_ROWS` rows at a time; row groups are
    checked in `pool`."""
    groups = range(table.num_row_groups)
    checks = pool.imap(check_row_group, [(str(table.path), g, BATCH_ROWS) for g in groups])
    for group, group_checks in zip(groups, checks, strict=True):
        yield from zip(table.batches(columns, BATCH_ROWS, [group]), group_checks, strict=True)


def check_row_group(job: tuple[str, int, int]) -> list[pl.DataFrame]:
    """`check_frame` of each batch (of `rows` rows) of one row group of a trace table (a worker's task)."""
    path, group, rows = job
    return [check_frame(b) for b in ParquetTable(path).batches(CHECK_INPUT, rows, [group])]


def to_judge() -> pl.Expr:
    """Rows the judge answers: open answers with a non-empty reference."""
    return (pl.col("answer_kind") == "open") & (pl.col("reference").str.strip_chars() != "")


def check_batch(
    batch: pl.DataFrame, checks: pl.DataFrame, judge: Judge | None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(batch with its `check_frame` columns and `_by`, `_why`, `_reply` for the details, the judge's
    outcomes of this batch)."""
    df = pl.concat([batch, checks], how="horizontal")
    unverifiable = pl.col("answer_check") == "unverifiable"
    is_open = pl.col("answer_kind") == "open"
    why = (
        pl.when(~unverifiable)
        .then(pl.lit(None, pl.String))
        .when(~is_open)
        .then(pl.lit(WHY["no_answer"]))
        .when(pl.col("reference").str.strip_chars() == "")
        .then(pl.lit(WHY["no_reference"]))
        .otherwise(pl.lit(WHY["no_judge"]))
    )
    if judge is None:
        rule = df.with_columns(_by=pl.lit("rule"), _why=why, _reply=pl.lit(None, pl.String))
        return rule, pl.DataFrame(schema={"judge_outcome": pl.String, "judge_verdict": pl.String})
    df = df.with_columns(item_id())
    outcomes = judge.outcomes(df.filter(to_judge()).select("item"))
    df = df.join(outcomes, on="item", how="left", maintain_order="left")
    judged = pl.col("judge_outcome").is_not_null()
    reason = pl.col("judge_outcome").replace_strict(WHY, default=None, return_dtype=pl.String)
    df = df.with_columns(
        answer_check=pl.when(judged).then(pl.coalesce("judge_verdict", pl.lit("unverifiable")))
        .otherwise(pl.col("answer_check")),
        _by=pl.when(judged).then(pl.lit("judge")).otherwise(pl.lit("rule")),
        _reply=pl.col("judge_reply").str.slice(0, REPLY_CHARS),
    ).with_columns(
        _why=pl.when(judged & (pl.col("judge_outcome") != JUDGED)).then(reason).otherwise(why)
    )  # fmt: skip
    outcomes = outcomes.select("judge_outcome", "judge_verdict")
    return df.drop("item", "judge_verdict", "judge_reply", "judge_outcome"), outcomes


def apply_policy(df: pl.DataFrame, cfg: VerifyConfig) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(kept rows, removed rows in the `REMOVED_VERIFY_SCHEMA` columns) by the removal policy."""
    verdict = pl.col("answer_check")
    reason = (
        pl.when((verdict == "wrong") & pl.lit(cfg.drop_wrong))
        .then(pl.lit(WRONG_ANSWER))
        .when((verdict == "unverifiable") & pl.lit(cfg.drop_unverifiable))
        .then(pl.lit(UNVERIFIABLE_ANSWER))
    )
    df = df.with_columns(_reason=reason)
    detail = pl.struct(
        extracted=pl.col("extracted_answer"),
        reference=pl.col("answer_reference"),
        checked_by=pl.col("_by"),
        why=pl.col("_why"),
        judge_reply=pl.col("_reply"),
    ).struct.json_encode()
    removed = df.filter(pl.col("_reason").is_not_null()).select(
        "id",
        stage=pl.lit(STAGE),
        reason="_reason",
        detail=detail,
        teacher="teacher",
        answer_kind="answer_kind",
    )
    return df.filter(pl.col("_reason").is_null()), removed


def count_rows(parts: list[pl.DataFrame], keys: list[str]) -> pl.DataFrame:
    """Per-batch `len` counts summed over batches."""
    if not parts:
        return pl.DataFrame(schema={**{k: pl.String for k in keys}, "len": pl.UInt32})
    return pl.concat(parts).group_by(keys).agg(pl.col("len").sum()).sort(keys)


def answer_checks(
    counts: pl.DataFrame, judged: pl.DataFrame, cfg: VerifyConfig, judge: Judge | None
) -> AnswerChecks:
    """The `answer_checks` block of stats.json from the summed counts."""
    rows = []
    wide = counts.pivot(on="answer_check", index=COUNT_KEYS[:3], values="len") if counts.height else counts
    for r in wide.sort(COUNT_KEYS[:3]).iter_rows(named=True):
        rows.append(CheckCounts(**{k: r[k] for k in COUNT_KEYS[:3]}, **{v: r.get(v) or 0 for v in VERDICTS}))
    judge_counts = None
    if judge is not None:
        by = {(o, v): n for o, v, n in judged.iter_rows()}
        judge_counts = JudgeCounts(
            rows=int(judged["len"].sum()) if judged.height else 0,
            correct=by.get((JUDGED, "correct"), 0),
            wrong=by.get((JUDGED, "wrong"), 0),
            unparseable=by.get((UNPARSEABLE, None), 0),
            prompt_too_long=by.get((TOO_LONG, None), 0),
            request_error=by.get((FAILED, None), 0),
        )
    return AnswerChecks(
        drop_wrong=cfg.drop_wrong,
        drop_unverifiable=cfg.drop_unverifiable,
        counts=rows,
        judge=judge.record() if judge is not None else None,
        judged=judge_counts,
    )


def run_verify(
    traces: Path,
    cfg: VerifyConfig,
    out_dir: Path,
    cache_dir: Path,
    backend_factory: BackendFactory | None = None,
) -> dict[str, Any]:
    """Check every trace; write traces.parquet, removed.parquet, stats.json (a function of the data)
    and run.json (what this run did); returns the stats."""
    start = time.perf_counter()
    table = open_traces(traces)
    cache_dir.mkdir(parents=True, exist_ok=True)  # a DVC out, even when no judge uses it
    judge = None
    pool = ProcessPool(cfg.workers)
    if cfg.judge is not None:
        judge = Judge.open(cfg.judge, JudgePrompt.load(cfg.judge_prompt), cache_dir)
        for batch, checks in checked_batches(table, pool, [*CHECK_INPUT, "id", "teacher"]):
            checked = pl.concat([batch, checks], how="horizontal")
            judge.plan(checked.filter(to_judge()).select(JUDGE_INPUT))
        factory = backend_factory or (lambda teacher: make_backend(teacher, cache_dir))
        judge.send(lambda: table.batches(JUDGE_INPUT, BATCH_ROWS), cfg, factory)
    schema = plain_strings(table.schema, VERIFY_FIELDS)  # the trace columns, then the verdict's
    counts, judged, rows_out = [], [], 0
    removed_counts: dict[str, int] = {}
    out_dir.mkdir(parents=True, exist_ok=True)
    with (
        pool,
        TableWriter(out_dir / "traces.parquet", schema, long_text=LONG_TEXT) as kept_writer,
        TableWriter(out_dir / "removed.parquet", REMOVED_VERIFY_SCHEMA) as removed_writer,
    ):
        for batch, checks in checked_batches(table, pool):
            checked, outcomes = check_batch(batch, checks, judge)
            counts.append(checked.group_by(COUNT_KEYS).len())
            judged.append(outcomes.group_by("judge_outcome", "judge_verdict").len())
            kept, removed = apply_policy(checked, cfg)
            rows_out += kept.height
            for reason, n in removed.group_by("reason").len().iter_rows():
                removed_counts[reason] = removed_counts.get(reason, 0) + n
            if kept.height:
                kept_writer.write(kept)
            if removed.height:
                removed_writer.write(removed)
    checks = answer_checks(
        count_rows(counts, COUNT_KEYS), count_rows(judged, ["judge_outcome", "judge_verdict"]), cfg, judge
    )
    stats = {
        "funnel": Funnel(
            stage=STAGE,
            rows_in=table.num_rows,
            rows_out=rows_out,
            removed=dict(sorted(removed_counts.items())),
        ).dump(),
        "funnel_unit": "(prompt, teacher) pairs",
        "answer_checks": checks.dump(),
    }
    write_json(stats, out_dir / "stats.json")
    wall = max(time.perf_counter() - start, 1e-9)
    rows = table.num_rows
    run = {
        "rows": rows,
        "wall_time_s": round(wall, 3),
        "rows_per_s": round(rows / wall, 1),
        "workers": pool.workers,
    }
    write_json({**run, "judge": judge.run if judge is not None else None}, out_dir / "run.json")
    return stats
