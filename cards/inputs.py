"""Read and check everything the release is built from: tables, stats, meta, lock file, commit."""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from cards.funnel import PIPELINE_ORDER, parse_funnel
from core.config import load_params
from core.contracts import Funnel, LicenseSummary, TeacherRecord, read_contract
from core.errors import InputError
from core.io import read_document, read_parquet, reading
from core.lockfile import lock_problem

TRACE_REQUIRED = ("id", "teacher", "teacher_model", "submix", "system_prompt_id", "question", "response")
HELDOUT_REQUIRED = ("id", "submix", "task_name", "question", "reference")


class ReleaseInputError(InputError):
    """An input of the release is missing or malformed; the message names the file and key."""


@dataclass(frozen=True)
class ReleaseInputs:
    """Everything the release stage reads, loaded and checked."""

    traces: pl.DataFrame
    traces_schema: pa.Schema
    heldout: pl.DataFrame
    heldout_schema: pa.Schema
    stats: dict[str, dict[str, Any]]  # stage -> its stats.json, in pipeline order
    funnel: list[Funnel]
    teacher_meta: dict[str, TeacherRecord]
    license_summary: LicenseSummary
    dvc_lock_sha256: str
    params_excerpt: str
    params_sha256: str
    git_commit: str

    @property
    def teachers(self) -> list[str]:
        return sorted(self.traces["teacher"].unique().to_list())


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`, with errors naming the file."""
    data = read_document(path, error=ReleaseInputError)
    if not isinstance(data, dict):
        raise ReleaseInputError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_table(path: Path, required: tuple[str, ...], sort_by: list[str]) -> tuple[pl.DataFrame, pa.Schema]:
    """A Parquet table and its Arrow schema, checked for required columns and sorted."""
    with reading(path):
        schema = pq.read_schema(path).remove_metadata()
    missing = [c for c in required if c not in schema.names]
    if missing:
        raise ReleaseInputError(f"{path}: missing columns {missing}")
    df = read_parquet(path)
    if df.select(pl.col("id").is_null().any()).item():
        raise ReleaseInputError(f"{path}: column 'id' has nulls")
    return df.sort(sort_by), schema


# Outs that record how a run went, not what it produced: a stage's `run.json` (wall times, requests
# sent) and the generation cache (its shard files depend on how many runs and kills it took).
RUN_RECORDS = ("run.json", "traces_cache")


def lock_digest(path: Path, stages: tuple[str, ...] = PIPELINE_ORDER) -> str:
    """sha256 of the `dvc.lock` entries of `stages` (canonical JSON).

    Only the stages the release is built from: the lock file also records the release stage itself,
    which would make the digest change with every run of it; and without the outs in
    `RUN_RECORDS`, which record how a run went, not the data.
    """
    if not path.is_file():
        raise ReleaseInputError(f"{path}: file not found")
    problem = lock_problem(path)
    if problem:
        raise ReleaseInputError(f"{path} {problem}: run `python -m core.lockfile --restore`")
    entries = yaml.safe_load(path.read_text(encoding="utf-8"))["stages"]
    missing = [s for s in stages if s not in entries]
    if missing:
        raise ReleaseInputError(f"{path}: no lock entries for stages {missing}; run `dvc repro` first")
    picked = {s: _without_run_records(entries[s]) for s in stages}
    return hashlib.sha256(json.dumps(picked, sort_keys=True, default=str).encode()).hexdigest()


def _without_run_records(entry: Any) -> Any:
    """A lock entry without its `RUN_RECORDS` outs."""
    if not isinstance(entry, dict) or not isinstance(entry.get("outs"), list):
        return entry
    outs = [o for o in entry["outs"] if not str((o or {}).get("path", "")).endswith(RUN_RECORDS)]
    return {**entry, "outs": outs}


def git_commit(cwd: Path | None = None) -> str:
    """The project's git commit (`git rev-parse HEAD`), or "unknown" when there is none.

    `-dirty` is appended (as `git describe --dirty` does) when tracked files other than
    `dvc.lock`, which the running pipeline itself rewrites, differ from that commit.
    """
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=30, check=False
        )
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)dvc.lock"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    sha = out.stdout.strip()
    if out.returncode != 0 or len(sha) != 40:
        return "unknown"
    return f"{sha}-dirty" if status.returncode == 0 and status.stdout.strip() else sha


# The params the card prints, and so the release stage's params in dvc.yaml: the data stages'
# sections and the Hub coordinates; never `train`/`eval`, which consume the release.
CARD_SECTIONS = ("base", "prompts", "license", "dedup", "traces", "release")
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


def load_inputs(
    traces: Path,
    traces_meta: Path,
    heldout: Path,
    stats: dict[str, Path],
    license_summary: Path,
    dvc_lock: Path,
    params: Path,
) -> ReleaseInputs:
    """Load and check every input; raises ReleaseInputError naming the file and key."""
    traces_df, traces_schema = read_table(traces, TRACE_REQUIRED, ["id", "teacher"])
    if traces_df.height == 0:
        raise ReleaseInputError(f"{traces}: the trace table is empty")
    dup = traces_df.select(pl.struct("id", "teacher").is_duplicated().any()).item()
    if dup:
        raise ReleaseInputError(f"{traces}: duplicate (id, teacher) rows")
    heldout_df, heldout_schema = read_table(heldout, HELDOUT_REQUIRED, ["id"])

    missing_stages = [s for s in PIPELINE_ORDER if s not in stats]
    if missing_stages:
        raise ReleaseInputError(f"stats.json missing for stages {missing_stages}")
    stage_stats = {stage: read_json(stats[stage]) for stage in PIPELINE_ORDER}
    funnel = [parse_funnel(stage_stats[s], str(stats[s])) for s in PIPELINE_ORDER]

    teacher_meta = {}
    for teacher in sorted(traces_df["teacher"].unique().to_list()):
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
        traces=traces_df,
        traces_schema=traces_schema,
        heldout=heldout_df,
        heldout_schema=heldout_schema,
        stats=stage_stats,
        funnel=funnel,
        teacher_meta=teacher_meta,
        license_summary=summary,
        dvc_lock_sha256=lock_digest(dvc_lock),
        params_excerpt=excerpt,
        params_sha256=hashlib.sha256(excerpt.encode("utf-8")).hexdigest(),
        git_commit=git_commit(params.parent),
    )
