"""Generated FLAN-v2 sources of any size, built from real words, in either Hub layout.

For scale runs (`benchmarks.prompts_scale`, `benchmarks.orca_scale`), not for training. Each submix
has real FLAN task names (those of the license registry, then names that resolve to one of its
datasets by stem), task sizes with a long tail (log-normal, at most 4x the mean), a share of
zero-shot rows, and rows shaped like
FLAN's: a task's own template text (the same for all its rows) around an instance of its own. The
words are drawn from real FLAN-format text (`../shared/data/real`, else the rows committed under
`tests/data/prompts_real`) with their natural frequencies, so the text compresses as real text
does; a template repeats within its task, so files grouped by task (as FLAN's exports are) stay
small. Planted: exact duplicate rows (0.2%) and near duplicates (0.5%, two words changed), options
blocks on most `*_opt` rows with the reference among the options, and CoT rationales.

`COLLECTION` is the Data Provenance Initiative's submixes at about their sizes (17.3M rows:
cot 0.18M, niv2 10.07M, t0 1.65M, flan2021 5.36M), half of each zero-shot.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmarks.synthetic import SOURCE_NAME
from builders.prompts.flan_source import OPENORCA_PREFIX

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real"
COMMITTED = ROOT / "tests" / "data" / "prompts_real"
REGISTRY = ROOT / "builders" / "license" / "registry.json"
CHUNK = 65_536
GENERATOR = 2  # bumped when the generated rows change (a kept source is then written again)
TEMPLATES = ("zs_opt", "zs_noopt", "fs_opt", "fs_noopt")


@dataclass(frozen=True)
class SubmixPlan:
    """One submix to generate: rows, tasks, zero-shot share and mean row length in bytes."""

    rows: int
    tasks: int
    zs_share: float = 0.5
    row_bytes: int = 1_000


COLLECTION = {
    "cot": SubmixPlan(183_848, 18, 0.5, 700),
    "niv2": SubmixPlan(10_066_896, 1_500, 0.5, 1_300),
    "t0": SubmixPlan(1_650_308, 330, 0.5, 900),
    "flan2021": SubmixPlan(5_362_361, 70, 0.5, 800),
}


def scaled(plan: dict[str, SubmixPlan], scale: float) -> dict[str, SubmixPlan]:
    """`plan` with `scale` times the rows (at least one per task) and no more tasks than rows."""
    out = {}
    for s, p in plan.items():
        rows = max(1, round(p.rows * scale))
        out[s] = SubmixPlan(rows, min(p.tasks, rows), p.zs_share, p.row_bytes)
    return out


@dataclass
class Words:
    """Real words with their frequencies, and a vectorised way to make text of them."""

    tokens: pa.StringArray

    @classmethod
    def load(cls, seed: int, size: int = 1_000_000) -> Words:
        """`size` words drawn from the real FLAN-format text available here."""
        if (REAL / "niv1_dev.parquet").is_file():
            files = [REAL / "niv1_dev.parquet", REAL / "flan_dev.parquet"]
        else:
            files = sorted(COMMITTED.rglob("*.parquet"))
        text = pl.concat([pl.read_parquet(f, columns=["inputs"]) for f in files])["inputs"]
        words = text.str.split(" ").explode()
        words = words.filter(words.str.len_bytes() > 0)
        rng = np.random.default_rng(seed)
        return cls(words.gather(rng.integers(0, len(words), size)).to_arrow().cast(pa.string()))

    def texts(self, rng: np.random.Generator, counts: np.ndarray) -> pl.Series:
        """One text of `counts[i]` words per i (words drawn independently, in no fixed order)."""
        counts = np.maximum(np.asarray(counts, dtype=np.int64), 1)
        words = self.tokens.take(pa.array(rng.integers(0, len(self.tokens), int(counts.sum()))))
        lists = pa.ListArray.from_arrays(pa.array(np.r_[0, np.cumsum(counts)], pa.int32()), words)
        return pl.Series(pc.binary_join(lists, " "), dtype=pl.String)


def task_names(submix: str, n: int) -> list[str]:
    """`n` task names: the registry's own for the submix, then names that resolve by its stems."""
    registry = json.loads(REGISTRY.read_text())
    real = sorted(t for t, d in registry["tasks"].items() if registry["datasets"][d]["submix"] == submix)
    stems = sorted(registry["stems"].get(submix, {}))
    names = real[:n]
    k = 0
    while len(names) < n:
        stem = stems[k % len(stems)]
        names.append(
            {
                "niv2": f"task{9000 + k}_{stem}_generated",
                "t0": f"{stem}_generated_{k}",
                "flan2021": f"{stem}:{k}.0.0",
                "cot": f"{stem}_generated_{k}",
            }.get(submix, f"{submix}_task_{k}")
        )
        k += 1
    return names


def task_sizes(rows: int, tasks: int, rng: np.random.Generator, cap: float = 4.0) -> np.ndarray:
    """Long-tailed task sizes (log-normal, at most `cap` times the mean, as FLAN caps the examples
    a task gives) summing to `rows`, each at least 1."""
    w = rng.lognormal(0.0, 1.0, tasks)
    for _ in range(20):  # clip, renormalise, until the largest is within the cap
        w = np.minimum(w / w.mean(), cap)
    sizes = 1 + np.floor((rows - tasks) * w / w.sum()).astype(np.int64)
    sizes[np.argsort(-w, kind="stable")[: rows - int(sizes.sum())]] += 1  # the rounding's remainder
    return sizes


def _chunks(submix: str, plan: SubmixPlan, words: Words, seed: int) -> Iterator[pl.DataFrame]:
    """The submix's rows in task order, CHUNK at a time (columns: the five FLAN fields)."""
    rng = np.random.default_rng([seed, len(submix), plan.rows])
    names = task_names(submix, plan.tasks)
    sizes = task_sizes(plan.rows, plan.tasks, rng)
    head_words = np.maximum(8, (plan.row_bytes * 0.45 / 6.6) * rng.lognormal(0, 0.3, plan.tasks)).astype(
        np.int64
    )
    heads = words.texts(rng, head_words)
    if submix == "niv2":
        heads = "Definition: " + heads
    task_of = np.repeat(np.arange(plan.tasks), sizes)
    mean_instance = max(4, int(plan.row_bytes * 0.28 / 6.6))
    names = pl.Series(names, dtype=pl.String)
    for start in range(0, plan.rows, CHUNK):
        task = task_of[start : start + CHUNK]
        n = task.size
        zs = rng.random(n) < plan.zs_share
        opt = (rng.random(n) < 0.5) | (submix == "cot")
        shots = np.where(zs, 1, 3)
        df = pl.DataFrame(
            {
                "head": heads.gather(task),
                "instance": words.texts(rng, rng.poisson(mean_instance, n) * shots + 1),
                "zs": zs,
                "opt": opt,
                "block": opt & (rng.random(n) < 0.8),
                "pick": rng.integers(0, 3, n),
                "o0": words.texts(rng, rng.integers(1, 4, n)),
                "o1": words.texts(rng, rng.integers(1, 4, n)),
                "o2": words.texts(rng, rng.integers(1, 4, n)),
                "answer": words.texts(rng, rng.integers(1, 6, n)),
                "rationale": words.texts(rng, rng.integers(15, 40, n)),
                "task_name": names.gather(task),
                "exact": rng.random(n) < 0.002,
                "near": rng.random(n) < 0.005,
                "edit": words.texts(rng, np.full(n, 2)),
            }
        )
        # planted duplicates: the previous row's instance and template, as is or with two words changed
        prev = pl.col("instance").shift(1)
        near = pl.concat_str([pl.col("edit"), prev.str.splitn(" ", 3).struct.field("field_2")], separator=" ")
        df = df.with_columns(
            pl.when(pl.col("exact") & prev.is_not_null())
            .then(prev)
            .when(pl.col("near") & prev.is_not_null())
            .then(pl.coalesce(near, prev))
            .otherwise("instance")
            .alias("instance"),
            *(
                pl.when(pl.col("exact") & prev.is_not_null()).then(pl.col(c).shift(1)).otherwise(c).alias(c)
                for c in ("zs", "opt", "block")
            ),
        )
        option = pl.when(pl.col("pick") == 0).then("o0").when(pl.col("pick") == 1).then("o1").otherwise("o2")
        reference = pl.when("block").then(option).otherwise("answer")
        if submix == "cot":
            reference = pl.concat_str(["rationale", pl.lit(". So the answer is "), reference, pl.lit(".")])
        block = pl.when("block").then(
            pl.concat_str([pl.lit("\nOPTIONS:\n- "), "o0", pl.lit("\n- "), "o1", pl.lit("\n- "), "o2"])
        )
        template = pl.concat_str(
            [pl.when("zs").then(pl.lit("zs_")).otherwise(pl.lit("fs_")),
             pl.when("opt").then(pl.lit("opt")).otherwise(pl.lit("noopt"))]
        )  # fmt: skip
        yield df.select(
            pl.concat_str(
                [pl.col("head"), pl.lit("\n\nInput: "), "instance", block.fill_null(""), pl.lit("\nOutput:")]
            ).alias("inputs"),
            reference.alias("targets"),
            pl.lit(SOURCE_NAME[submix]).alias("task_source"),
            "task_name",
            template.alias("template_type"),
        )


def write_source(
    root: Path,
    plan: dict[str, SubmixPlan],
    layout: str = "dpi",
    *,
    seed: int = 0,
    rows_per_file: int = 1_000_000,
) -> dict[str, int]:
    """Write the planned submixes under `root` in the `dpi` or `openorca` layout; rows per submix.

    Parquet with zstd, row groups of `CHUNK` rows, files of about `rows_per_file` rows.
    """
    words = Words.load(seed)
    written = {}
    for submix, p in plan.items():
        writers: dict[str, _Rolling] = {}
        for df in _chunks(submix, p, words, seed):
            if layout == "dpi":
                key = "all"
                folder = root / f"{submix}_submix_original" / "data"
                part = df
                writers.setdefault(key, _Rolling(folder, "train-{:05d}.parquet", rows_per_file)).write(part)
                continue
            for (tt,), part in df.partition_by("template_type", as_dict=True).items():
                folder = root / f"{OPENORCA_PREFIX[submix]}_{str(tt).replace('_', '')}_data"
                renamed = part.rename({c: f"_{c}" for c in ("task_source", "task_name", "template_type")})
                writers.setdefault(str(tt), _Rolling(folder, "part.{}.parquet", rows_per_file)).write(renamed)
        for w in writers.values():
            w.close()
        written[submix] = p.rows
    return written


class _Rolling:
    """A Parquet writer that starts a new numbered file every `rows_per_file` rows."""

    def __init__(self, folder: Path, pattern: str, rows_per_file: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.pattern, self.limit = folder, pattern, rows_per_file
        self.writer: pq.ParquetWriter | None = None
        self.files = self.rows = 0

    def write(self, df: pl.DataFrame) -> None:
        table = df.to_arrow().cast(pa.schema([pa.field(c, pa.string()) for c in df.columns]))
        if self.writer is None or self.rows >= self.limit:
            self.close()
            path = self.folder / self.pattern.format(self.files)
            self.writer = pq.ParquetWriter(path, table.schema, compression="zstd")
            self.files += 1
            self.rows = 0
        self.writer.write_table(table)
        self.rows += table.num_rows

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
