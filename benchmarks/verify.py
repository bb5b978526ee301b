"""Benchmark: the `verify` stage with one worker and with all of them, on real FLAN questions and references.

    python -m benchmarks.verify --rows 524288 --workers 2   # 8 row groups of 65,536

A trace table of `--rows` rows: questions and references of the real FLAN-format rows
(`../shared/data/real`, else `tests/data/prompts_real`), each answered by an explanation of ~120
real words ending "So the answer is X." (X the reference for 70% of the rows, other words
otherwise), two teachers, sorted by id, in row groups of 65,536. `python -m builders.verify` runs on
it with `verify.workers: 1` (the baseline) and with `--workers`, each in its own process, `--rounds`
times alternating (the best round of each is kept: on a shared machine the slower rounds measure
the neighbours). Printed: rows/s and peak RSS (the stage and its workers) of each, the ratio, the
load average, whether the outputs are the same bytes, and before each round the machine's ceiling:
how many times one process's speed `--workers` pure-Python processes got at that moment (on a
shared VM, steal time keeps it below `--workers`, and the stage's ratio below it).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import yaml

from benchmarks.flan_scale import COMMITTED, REAL, Words
from benchmarks.measure import cpu_ceiling, load, run_measured, tail
from core.io import write_parquet
from core.schema import PROMPT_SCHEMA, TRACE_FIELDS

OUTPUTS = ("traces.parquet", "removed.parquet", "stats.json")


def real_rows() -> pl.DataFrame:
    """Questions and references of the real FLAN-format rows available here."""
    if (REAL / "flan_dev.parquet").is_file():
        files = [REAL / "flan_dev.parquet", REAL / "niv1_dev.parquet"]
    else:
        files = sorted(COMMITTED.rglob("*.parquet"))
    frames = [pl.read_parquet(f, columns=["inputs", "targets", "task_name", "template_type"]) for f in files]
    return pl.concat(frames).rename({"inputs": "question", "targets": "reference"})


def trace_table(rows: int, path: Path, seed: int = 0) -> Path:
    """`rows` traces of the real questions (see the module docstring), sorted by id."""
    rng = np.random.default_rng(seed)
    words = Words.load(seed, 200_000)
    real = real_rows()
    pick = rng.integers(0, real.height, rows)
    base = real[pick]
    right = rng.random(rows) < 0.7
    final = pl.select(
        pl.when(pl.Series(right))
        .then(base["reference"].str.slice(0, 200))
        .otherwise(words.texts(rng, np.full(rows, 2)))
    ).to_series()
    body = words.texts(rng, rng.poisson(120, rows) + 1)
    ids = [hashlib.sha256(f"v{i}".encode()).hexdigest()[:24] for i in range(rows)]
    df = base.with_columns(
        id=pl.Series(ids),
        submix=pl.lit("flan2021"),
        has_options=pl.col("question").str.contains("OPTIONS"),
        system_prompt_id=pl.lit(1, pl.Int32),
        system_prompt=pl.lit("Explain your answer step by step."),
        teacher=pl.Series(np.where(rng.random(rows) < 0.8, "a", "b")),
        teacher_model=pl.lit("example/teacher"),
        response=body + ". So the answer is " + final + ".",
        finish_reason=pl.lit("stop"),
        prompt_tokens=pl.lit(300, pl.Int32),
        completion_tokens=pl.lit(200, pl.Int32),
    ).sort("id", "teacher")
    write_parquet(df, path, pa.schema([*PROMPT_SCHEMA, *TRACE_FIELDS]))
    return path


def run(traces: Path, work: Path, name: str, workers: int) -> dict:
    """`python -m builders.verify` with `workers`, measured."""
    params = work / f"{name}.yaml"
    params.write_text(yaml.safe_dump({"verify": {"drop_wrong": True, "workers": workers}}))
    out = work / name
    cmd = [
        sys.executable,
        "-m",
        "builders.verify",
        "--params",
        str(params),
        "--traces",
        str(traces),
        "--out",
        str(out),
        "--cache",
        str(work / "cache"),
    ]
    res = run_measured(cmd, work / f"{name}.log")
    if res["rc"] != 0:
        raise SystemExit(f"verify failed (rc {res['rc']}):\n{tail(work / f'{name}.log')}")
    return {**res, "out": out}


def main(argv: list[str] | None = None) -> int:
    """Build the trace table, run both sides, print the figures."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--rows", type=int, default=524_288, help="rows (65,536 a row group: whole groups balance)"
    )
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="verify-bench-") as tmp:
        work = Path(tmp)
        traces = trace_table(args.rows, work / "traces.parquet")
        print(f"{args.rows:,} traces; {load()}")
        best: dict[int, dict] = {}
        for k in range(args.rounds):
            ceiling = cpu_ceiling(args.workers)
            print(f"round {k + 1}: {args.workers} processes of pure Python run {ceiling:.2f}x one")
            for workers in (1, args.workers) if k % 2 == 0 else (args.workers, 1):
                res = run(traces, work, f"w{workers}-r{k}", workers)
                rss = res["peak_rss_gib"]
                print(f"round {k + 1}, {workers} worker(s): {res['wall_s']} s, peak RSS {rss} GiB ({load()})")
                if workers not in best or res["wall_s"] < best[workers]["wall_s"]:
                    best[workers] = res
        one, many = best[1], best[args.workers]
        same = all((one["out"] / f).read_bytes() == (many["out"] / f).read_bytes() for f in OUTPUTS)
        for workers, res in sorted(best.items()):
            print(
                f"{workers} worker(s): {args.rows / res['wall_s']:,.0f} rows/s (best of {args.rounds}), "
                f"peak RSS {res['peak_rss_gib']} GiB"
            )
        ratio = one["wall_s"] / many["wall_s"]
        print(f"ratio {args.workers} workers / 1: {ratio:.2f}x rows/s; same bytes: {same}; {load()}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
