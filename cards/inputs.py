"""Read and check everything the release is built from: tables, stats, meta, and their digests."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import yaml

from cards.funnel import PIPELINE_ORDER, parse_funnel
from core.config import load_params
from core.contracts import AnswerChecks, Funnel, LicenseSummary, TeacherRecord, parse_contract, read_contract
from core.errors import InputError
from core.io import ParquetTable, file_md5, read_document

TRACE_REQUIRED = (
    "id",
    "teacher",
    "teacher_model",
    "submix",
    "system_prompt_id",
    "system_prompt",
    "question",
    "response",
    "prompt_tokens",
    "completion_tokens",
    "answer_check",  # the release reads the `verify` stage's table, not the raw traces
)
HELDOUT_REQUIRED = ("id", "submix", "task_name", "question", "reference")


class ReleaseInputError(InputError):
    """An input of the release is missing or malformed; the message names the file and key."""


# The columns the check pass reads: the sort key and what the card counts per distinct prompt.
SCAN_COLUMNS = ["id", "teacher", "submix", "system_prompt_id", "prompt_tokens", "completion_tokens"]


@dataclass(frozen=True)
class TraceSummary:
    """The trace table, left on disk, and the figures the card prints, from one checked pass."""

    table: ParquetTable
    rows: int
    prompts: int  # distinct ids
    rows_per_teacher: dict[str, int]
    tokens_per_teacher: dict[str, tuple[int, int]]  # (prompt, completion) tokens of its rows, by usage
    prompt_mix: pl.DataFrame  # distinct prompts per (system_prompt_id, submix): columns ..., `len`

    @property
    def teachers(self) -> list[str]:
        return sorted(self.rows_per_teacher)


def open_table(path: Path, required: tuple[str, ...]) -> ParquetTable:
    """A Parquet input of the release, checked for required columns."""
    return ParquetTable(path, required=required, error=ReleaseInputError)


def _check_batch(path: Path, df: pl.DataFrame, offset: int) -> None:
    """Refuse null keys, rows out of (id, teacher) order and repeated keys; rows are numbered from 0.

    `df` holds one batch with `prev_id`/`prev_teacher`: the key of the row before (the last row of
    the previous batch for the first one), so the order is checked across batch boundaries too.
    """
    for column in ("id", "teacher"):
        if df[column].null_count():
            row = offset + int(df[column].is_null().arg_max() or 0)
            raise ReleaseInputError(f"{path}: column {column!r} has nulls (row {row})")
    same_id = pl.col("id") == pl.col("prev_id")
    bad = df.with_row_index("row", offset).filter(
        (pl.col("id") < pl.col("prev_id")) | (same_id & (pl.col("teacher") <= pl.col("prev_teacher")))
    )
    if bad.height:
        first = bad.row(0, named=True)
        key, prev = (first["id"], first["teacher"]), (first["prev_id"], first["prev_teacher"])
        what = "duplicate (id, teacher)" if key == prev else "rows not sorted by (id, teacher)"
        raise ReleaseInputError(
            f"{path}: {what} at row {first['row']}: {key} after {prev}; "
            "the traces stage writes it sorted by (id, teacher), one row per pair"
        )


def scan_traces(path: Path) -> TraceSummary:
    """Check the trace table in one streaming pass over its key columns and count what the card needs.

    The table must be sorted by (id, teacher) with no nulls and no repeated key (as the traces stage
    writes it): with sorted rows that is a comparison of each row with the one before. Nothing is
    sorted or held in memory but one batch of `SCAN_COLUMNS` and the running counts.
    """
    table = open_table(path, TRACE_REQUIRED)
    rows = 0
    last: dict[str, Any] = {"id": None, "teacher": None}
    per_teacher: list[pl.DataFrame] = []
    mix: list[pl.DataFrame] = []
    for batch in table.batches(SCAN_COLUMNS):
        df = batch.with_columns(
            prev_id=pl.col("id").shift(1, fill_value=last["id"]),
            prev_teacher=pl.col("teacher").shift(1, fill_value=last["teacher"]),
        )
        _check_batch(path, df, rows)
        rows += df.height
        last = {"id": df["id"][-1], "teacher": df["teacher"][-1]}
        per_teacher.append(
            df.group_by("teacher").agg(
                pl.len(), pl.col("prompt_tokens").sum(), pl.col("completion_tokens").sum()
            )
        )
        first_of_id = (pl.col("id") != pl.col("prev_id")).fill_null(True)
        mix.append(df.filter(first_of_id).group_by("system_prompt_id", "submix").len())
    if rows == 0:
        raise ReleaseInputError(f"{path}: the trace table is empty")
    counts = pl.concat(per_teacher).group_by("teacher").agg(pl.all().sum())
    prompt_mix = pl.concat(mix).group_by("system_prompt_id", "submix").agg(pl.col("len").sum())
    prompt_mix = prompt_mix.sort("system_prompt_id", "submix")
    return TraceSummary(
        table=table,
        rows=rows,
        prompts=int(prompt_mix["len"].sum()),
        rows_per_teacher=dict(counts.select("teacher", "len").iter_rows()),
        tokens_per_teacher={t: (int(p), int(c)) for t, _, p, c in counts.iter_rows()},
        prompt_mix=prompt_mix,
    )


@dataclass(frozen=True)
class ReleaseInputs:
    """Everything the release stage reads, loaded and checked (the trace table stays on disk)."""

    traces: TraceSummary
    heldout: pl.DataFrame
    heldout_schema: pa.Schema
    stats: dict[str, dict[str, Any]]  # stage -> its stats.json, in pipeline order
    funnel: list[Funnel]
    teacher_meta: dict[str, TeacherRecord]
    license_summary: LicenseSummary
    answer_checks: AnswerChecks
    input_md5: dict[str, str]  # input file (relative to the project root) -> md5, as dvc.lock has it
    params_excerpt: str
    params_sha256: str

    @property
    def teachers(self) -> list[str]:
        return self.traces.teachers


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`, with errors naming the file."""
    data = read_document(path, error=ReleaseInputError)
    if not isinstance(data, dict):
        raise ReleaseInputError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_table(path: Path, required: tuple[str, ...], sort_by: list[str]) -> tuple[pl.DataFrame, pa.Schema]:
    """A (small) Parquet table and its Arrow schema, checked for required columns and sorted."""
    table = open_table(path, required)
    df = table.read()
    if df.select(pl.col("id").is_null().any()).item():
        raise ReleaseInputError(f"{path}: column 'id' has nulls")
    return df.sort(sort_by), table.schema


def input_digests(paths: list[Path], root: Path) -> dict[str, str]:
    """md5 of each input file (each file of an input folder), named relative to `root`, sorted.

    DVC records the same md5 for a file in the stage's `dvc.lock` entry, so a reader can match a
    card to a lock; unlike the lock, these are a function of the stage's declared deps alone.
    """
    files = [
        f for p in paths for f in (sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p])
    ]
    digests = {}
    for f in files:
        if not f.is_file():
            raise ReleaseInputError(f"{f}: file not found")
        digests[Path(os.path.relpath(f.resolve(), root.resolve())).as_posix()] = file_md5(f)
    return dict(sorted(digests.items()))


# The params the card prints, and so the release stage's params in dvc.yaml: the data stages'
# sections and the Hub coordinates; never `train`/`eval`, which consume the release.
CARD_SECTIONS = ("base", "prompts", "license", "dedup", "traces", "verify", "release")
CARD_KEYS = ("publish.repo_id", "publish.version")


def params_excerpt(params_path: Path) -> str:
    """The data stages' params, re-dumped as YAML for the card (comments dropped, order kept)."""
    params = load_params(params_path)
    keep: dict[str, Any] = {s: params[s] for s in params if s in CARD_SECTIONS}
    for key in CARD_KEYS:
        section, name = key.split(".")
        if name in (params.get(section) or {}):
            keep.setdefault(section, {})[name] = params[section][name]
    return yaml.safe_dump(keep, sort_keys=False, allow_unicode=True).strip()


def read_answer_checks(stats: dict[str, Any], source: str, funnel: Funnel) -> AnswerChecks:
    """The `answer_checks` block of the verify stage's stats; its counts cover the stage's rows in."""
    checks = parse_contract(AnswerChecks, stats.get("answer_checks"), f"{source}: answer_checks")
    counted = sum(c.correct + c.wrong + c.unverifiable for c in checks.counts)
    if counted != funnel.rows_in:
        raise ReleaseInputError(
            f"{source}: answer_checks.counts add up to {counted} rows, "
            f"the funnel has rows_in {funnel.rows_in}"
        )
    return checks


def load_inputs(
    traces: Path,
    traces_meta: Path,
    heldout: Path,
    stats: dict[str, Path],
    license_summary: Path,
    params: Path,
) -> ReleaseInputs:
    """Load and check every input; raises ReleaseInputError naming the file and key."""
    trace_table = scan_traces(traces)
    heldout_df, heldout_schema = read_table(heldout, HELDOUT_REQUIRED, ["id"])

    missing_stages = [s for s in PIPELINE_ORDER if s not in stats]
    if missing_stages:
        raise ReleaseInputError(f"stats.json missing for stages {missing_stages}")
    stage_stats = {stage: read_json(stats[stage]) for stage in PIPELINE_ORDER}
    funnel = [parse_funnel(stage_stats[s], str(stats[s])) for s in PIPELINE_ORDER]

    checks = read_answer_checks(
        stage_stats["verify"], str(stats["verify"]), funnel[PIPELINE_ORDER.index("verify")]
    )

    teacher_meta = {}
    for teacher in trace_table.teachers:
        teacher_meta[teacher] = read_contract(TeacherRecord, traces_meta / f"{teacher}.json")

    summary = read_contract(LicenseSummary, license_summary)
    unvetted = [t for t in teacher_meta if t not in summary.teachers]
    if unvetted:
        raise ReleaseInputError(
            f"{license_summary}: teachers {unvetted} have traces but no terms of use; "
            f"add license.teachers.{unvetted[0]} and rerun the license stage"
        )
    excerpt = params_excerpt(params)
    return ReleaseInputs(
        traces=trace_table,
        heldout=heldout_df,
        heldout_schema=heldout_schema,
        stats=stage_stats,
        funnel=funnel,
        teacher_meta=teacher_meta,
        license_summary=summary,
        answer_checks=checks,
        input_md5=input_digests(
            [traces, traces_meta, heldout, *stats.values(), license_summary], params.parent
        ),
        params_excerpt=excerpt,
        params_sha256=hashlib.sha256(excerpt.encode("utf-8")).hexdigest(),
    )
