"""The `prompts` stage's passes over one submix, each a task a worker process runs.

Memory follows a bucket of tasks, never the source:

1. `scan_file` reads one source file a batch at a time: counts the rows of template types not
   asked for, turns faulty rows into removed rows, and spills the others (task, template type,
   question, reference) to disk, each under the part of its task (a crc32 of the task name; several
   parts per bucket). `plan_buckets` then groups the parts into buckets of about even size by
   their spilled bytes, largest first into the lightest bucket, so tasks hashed together unevenly
   do not make one bucket several times the others.
2. `count_bucket` reads one bucket back and counts each task's distinct rows (what sampling
   draws from), so the parent can lay out the rank streams and allocate the budget over all tasks.
3. `sample_bucket` reads one bucket back and does what the in-memory stage did to those tasks:
   drops duplicate rows, sets excluded tasks aside, ranks every row from its pool's rank stream at
   the row's position in the pool (`sampling.uniforms_at`), keeps each task's best-ranked rows and
   gives them ids, options flags and system messages.

A worker holds one bucket's text once, plus a few integers per row: rows are ordered by index
(`distinct_order`), never copied in order. So memory follows the largest bucket, and a bucket holds
whole tasks: a task larger than `recipe.BUCKET_BYTES` makes its bucket that large.

A task's rows all fall in one bucket, and every rule of the stage looks within a task (duplicates
share a task; exclusion and hold-out take whole tasks), so the rows are those of the whole-source
computation.
"""

from __future__ import annotations

import heapq
import math
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from answers.options import LISTS_OPTIONS
from builders.prompts.flan_source import read_batches
from builders.prompts.sampling import add_ids, pool_rngs, take_best, uniforms_at
from builders.prompts.system_messages import SystemMessage, assign_system_messages
from core.schema import PROMPT_SCHEMA
from core.spill import Spill, read_key

CONTENT_KEY = ["task_name", "template_type", "question"]
SPILLED = [*CONTENT_KEY, "reference"]
DUPLICATE = "same submix, task, template and inputs as a kept row"
POOLS = {"heldout": 1, "train": 2}  # pool -> purpose of its seeded streams (`sampling.pool_rngs`)
EXCLUDED = "excluded"
OUT_ROWS = 32_768  # rows leaving a bucket, gathered and written at a time


def has_options(df: pl.DataFrame) -> pl.Series:
    """True for rows whose question lists answer options (`answers.options.LISTS_OPTIONS`, the
    checker's rule as one vectorised pattern); a `*_opt` template alone is not enough (FLAN's CoT
    and WebQuestions templates are all `zs_opt`, most of them list no options)."""
    return df["question"].str.contains(LISTS_OPTIONS).alias("has_options")


def part_of(task: str, parts: int) -> str:
    """The spill key of a task's part (a bucket is a group of parts)."""
    return f"p{zlib.crc32(task.encode('utf-8')) % parts:05d}"


def removed_rows(df: pl.DataFrame, reason: pl.Expr | str, detail: pl.Expr) -> pl.DataFrame:
    """Rows of `removed.parquet` (id, stage, reason, detail, submix, task_name)."""
    reason_expr = pl.lit(reason) if isinstance(reason, str) else reason
    return df.select(
        pl.col("id"),
        pl.lit("prompts").alias("stage"),
        reason_expr.alias("reason"),
        detail.alias("detail"),
        pl.col("submix"),
        pl.col("task_name"),
    )


def fault_rows(faulty: pl.DataFrame) -> pl.DataFrame:
    """Removed rows for faulty source rows: the fault's reason, and the file and column as detail."""
    complete = pl.all_horizontal(pl.col(c).is_not_null() for c in CONTENT_KEY)
    faulty = pl.concat(
        [
            add_ids(faulty.filter(complete)),
            faulty.filter(~complete).with_columns(pl.lit(None, pl.String).alias("id")),
        ],
        how="diagonal",
    )
    fault = pl.col("fault").str.split(":")
    detail = pl.concat_str([pl.col("file"), pl.lit(": column "), fault.list.last()])
    return removed_rows(faulty, fault.list.first(), detail)


@dataclass(frozen=True)
class ScanJob:
    """One source file of a submix, and where its rows are spilled."""

    path: str
    label: str
    submix: str
    template_types: tuple[str, ...]
    parts: int
    spill: str


@dataclass(frozen=True)
class ScanResult:
    """What a file held: its rows, those of template types not asked for, its faulty rows."""

    rows: int
    skipped: dict[str, int]
    faults: pl.DataFrame


def scan_file(job: ScanJob) -> ScanResult:
    """Read one file a batch at a time; spill its usable rows by part (see the module docstring)."""
    spill = Spill(job.spill)
    keep = list(job.template_types)
    rows, skipped, faults = 0, {}, []
    keys: dict[str, str] = {}
    try:
        for df in read_batches(Path(job.path), job.submix, job.label):
            rows += df.height
            df = df.rename({"inputs": "question", "targets": "reference"})
            faulty = pl.col("fault").is_not_null()
            wanted = pl.col("template_type").is_in(keep)
            for t, n in df.filter(~faulty & ~wanted).group_by("template_type").len().iter_rows():
                skipped[t] = skipped.get(t, 0) + n
            if df.filter(faulty).height:
                faults.append(fault_rows(df.filter(faulty)))
            good = df.filter(~faulty & wanted).select(SPILLED)
            for task in good["task_name"].unique().to_list():
                keys.setdefault(task, part_of(task, job.parts))
            spill.add_by(good.with_columns(pl.col("task_name").replace_strict(keys).alias("_part")), "_part")
    finally:
        spill.close()
    empty = removed_rows(
        pl.DataFrame(schema=dict.fromkeys(["id", "submix", "task_name"], pl.String)), "", pl.lit("")
    )
    return ScanResult(rows, skipped, pl.concat(faults) if faults else empty)


@dataclass(frozen=True)
class BucketJob:
    """One bucket of a submix: its parts' spill keys in each file's spill folder, and its name."""

    roots: tuple[str, ...]
    parts: tuple[str, ...]
    name: str

    def read(self, columns: list[str]) -> pa.Table:
        roots = [Path(r) for r in self.roots]
        tables = [t for p in self.parts if (t := read_key(roots, p, columns)) is not None]
        if not tables:
            return pa.table({c: pa.array([], pa.large_string()) for c in columns})
        return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def plan_buckets(roots: tuple[str, ...], bucket_bytes: int) -> list[BucketJob]:
    """The scan's parts grouped into buckets of about `bucket_bytes` (uncompressed, from the spill
    files' footers): parts by size, largest first (then by key), each into the lightest bucket."""
    sizes: Counter = Counter()
    for root in roots:
        for f in Path(root).glob("*.parquet"):
            meta = pq.ParquetFile(f).metadata
            sizes[f.stem] += sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    n = max(1, min(len(sizes), math.ceil(sum(sizes.values()) / bucket_bytes)))
    loads = [(0, i) for i in range(n)]
    groups: list[list[str]] = [[] for _ in range(n)]
    for part in sorted(sizes, key=lambda k: (-sizes[k], k)):
        load, i = heapq.heappop(loads)
        groups[i].append(part)
        heapq.heappush(loads, (load + sizes[part], i))
    return [BucketJob(roots, tuple(sorted(g)), f"b{i:05d}") for i, g in enumerate(groups) if g]


def _key_hash(df: pl.DataFrame) -> np.ndarray:
    """A 64-bit hash of each row's (task, template type, question)."""
    h = np.zeros(df.height, dtype=np.uint64)
    for k, column in enumerate(CONTENT_KEY):
        h = h * np.uint64(0x9E3779B97F4A7C15) ^ df[column].hash(seed=k).to_numpy()
    return h


def distinct_order(table: pa.Table, columns: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(order, first): row indices sorted by `columns` (which start with the content key), and for
    each sorted position whether it is the first row of its (task, template type, question).

    Sorted with Arrow's comparison sort (indices only, no copy of the text); adjacent rows are
    compared by a hash of their content key, and only rows whose hash equals their neighbour's
    are compared as text, so the memory is the table's plus a few integers per row.
    """
    order = pc.sort_indices(table, [(c, "ascending") for c in columns]).to_numpy()
    df = pl.from_arrow(table.select(CONTENT_KEY))
    assert isinstance(df, pl.DataFrame)
    hashes = _key_hash(df)[order]
    first = np.ones(order.size, dtype=bool)
    maybe = np.flatnonzero(hashes[1:] == hashes[:-1]) + 1
    if maybe.size:
        prev, this = df[order[maybe - 1]], df[order[maybe]]
        same = np.ones(maybe.size, dtype=bool)
        for column in CONTENT_KEY:
            same &= (prev[column] == this[column]).to_numpy()
        first[maybe[same]] = False
    return order, first


def count_bucket(job: BucketJob) -> pl.DataFrame:
    """(task_name, rows): each task's distinct rows (by task, template type and question)."""
    table = job.read(CONTENT_KEY)
    order, first = distinct_order(table, CONTENT_KEY)
    tasks = pl.from_arrow(table.column("task_name")).gather(order[first])
    return tasks.to_frame("task_name").group_by("task_name").agg(pl.len().cast(pl.UInt32).alias("rows"))


@dataclass(frozen=True)
class SampleJob:
    """What `sample_bucket` needs: the bucket, and for each of its tasks the pool it is in, the
    task's first position in that pool's rank stream and how many rows it gives (`take`)."""

    bucket: BucketJob
    submix: str
    seed: int
    tasks: pl.DataFrame  # task_name, pool (train | heldout | excluded), offset, take
    exclude_detail: str
    weights: dict[str, dict[int, float]]
    messages: dict[int, SystemMessage]
    out: str  # the root of the stage's output spills (`Outputs`)


@dataclass
class Outputs:
    """The stage's three outputs, spilled until they are written in order: sampled and held-out
    rows by id prefix, removed rows by reason and submix, under `root/<kind>/<writer>/` (one
    folder per writer: a bucket's worker, or the parent)."""

    root: Path
    writer: str
    spills: dict[str, Spill] = field(init=False)

    def __post_init__(self) -> None:
        self.spills = {k: Spill(self.root / k / self.writer) for k in ("prompts", "heldout", "removed")}

    def add(self, kind: str, df: pl.DataFrame) -> None:
        by_reason = pl.concat_str("reason", pl.lit("."), "submix")
        key = by_reason if kind == "removed" else pl.col("id").str.slice(0, 2)
        self.spills[kind].add_by(df.with_columns(key.alias("_key")), "_key")

    def close(self) -> None:
        for spill in self.spills.values():
            spill.close()


def spilled(root: Path, kind: str) -> Iterator[tuple[str, pl.DataFrame]]:
    """(key, rows) of one output kind, every writer's rows of a key together, keys in sorted order
    (removed rows: by reason, then submix)."""
    roots = sorted(p for p in (root / kind).glob("*") if p.is_dir())
    keys = sorted({f.stem for r in roots for f in r.glob("*.parquet")}, key=lambda k: tuple(k.split(".")))
    for key in keys:
        table = read_key(roots, key)
        df = pl.from_arrow(table) if table is not None else pl.DataFrame()
        assert isinstance(df, pl.DataFrame)
        yield key, df


@dataclass
class SampleSummary:
    """What a bucket wrote, for the stage's stats: prompts per system message, the tasks sampled,
    the held-out tasks and rows, the removed rows per reason."""

    per_message: Counter = field(default_factory=Counter)
    tasks: set[str] = field(default_factory=set)
    heldout_tasks: set[str] = field(default_factory=set)
    heldout_rows: int = 0
    removed: Counter = field(default_factory=Counter)


def finish_rows(
    df: pl.DataFrame, weights: dict, messages: dict[int, SystemMessage], seed: int
) -> pl.DataFrame:
    """Sampled rows with ids in the prompt schema: `has_options` and a system message per row."""
    df = df.with_columns(has_options(df))
    out = assign_system_messages(df, weights, messages, f"{seed}:system_message")
    return out.select(PROMPT_SCHEMA.names)


def sample_bucket(job: SampleJob) -> SampleSummary:
    """Deduplicate, exclude, rank and sample one bucket's tasks (see the module docstring); the
    rows leaving the bucket are written to the output spills, `OUT_ROWS` at a time.

    The text is held once: rows are ordered by index (`distinct_order`), and only the rows that
    leave the bucket (sampled, held out, removed) are gathered, a slice at a time.
    """
    table = job.bucket.read(SPILLED)
    order, first = distinct_order(table, SPILLED)
    rows = pl.from_arrow(table).with_columns(pl.lit(job.submix).alias("submix"))
    assert isinstance(rows, pl.DataFrame)
    del table
    out = Outputs(Path(job.out), f"{job.submix}-{job.bucket.name}")
    summary = SampleSummary()

    def emit(kind: str, picks: np.ndarray, make: Callable[[pl.DataFrame], pl.DataFrame]) -> None:
        for start in range(0, picks.size, OUT_ROWS):
            df = make(add_ids(rows[picks[start : start + OUT_ROWS]]))
            out.add(kind, df)
            if kind == "removed":
                summary.removed.update(dict(df.group_by("reason").len().iter_rows()))
            elif kind == "prompts":
                summary.per_message.update(dict(df.group_by("system_prompt_id").len().iter_rows()))
                summary.tasks.update(df["task_name"].unique().to_list())
            else:
                summary.heldout_tasks.update(df["task_name"].unique().to_list())
                summary.heldout_rows += df.height

    emit("removed", order[~first], lambda df: removed_rows(df, "duplicate_id", pl.lit(DUPLICATE)))
    kept = order[first]  # distinct rows by task, template type, question
    plan = pl.DataFrame({"_row": kept, "task_name": rows["task_name"].gather(kept)})
    plan = plan.join(job.tasks, on="task_name", how="left", maintain_order="left")
    excluded = plan.filter(pl.col("pool") == EXCLUDED)["_row"].to_numpy()
    emit("removed", excluded, lambda df: removed_rows(df, "excluded_task", pl.lit(job.exclude_detail)))
    for pool, purpose in POOLS.items():
        part = plan.filter(pl.col("pool") == pool)
        spans = part.group_by("task_name", maintain_order=True).agg(pl.col("offset").first(), pl.len())
        rank_rng, _ = pool_rngs(job.seed, job.submix, purpose)
        spans_list = list(zip(spans["offset"].to_list(), spans["len"].to_list(), strict=True))
        ranks = uniforms_at(rank_rng, spans_list)
        part = take_best(part.with_columns(pl.Series("_rank", ranks, dtype=pl.Float64), _take=pl.col("take")))
        kind = "prompts" if pool == "train" else "heldout"
        emit(kind, part["_row"].to_numpy(), lambda df: finish_rows(df, job.weights, job.messages, job.seed))
    out.close()
    return summary
