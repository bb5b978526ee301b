"""Benchmark: the `traces` stage over N prompts whose generations are all in the cache already.

    python -m benchmarks.traces_scale --n 5000000 --work /tmp/scale   # ~25 GB of disk at 5M

It stands for a finished generation run, which is what a resumed or re-released run meets:

1. `fill`: writes a prompt table of N FLAN-length prompts (sorted by id, the prompt schema) and fills
   the generation cache with one answer per (prompt, teacher) pair through the cache's public
   functions (`fill_cache`: `write_shard` of id-ordered shards, as a run sends them, `compact`
   whenever they add up to `traces.cache_pack_bytes`, as `generate` does). Two teachers,
   Orca's mix: `a` answers 80% of the prompts, `b` 20% (N generations in all). Answers are ~2 KB of
   words cut from a pool of real NIV2 text (or a generated vocabulary without `../shared`).
2. `run`: `python -m builders.traces` on it in a child process (nothing is sent: every answer is
   cached), its memory polled (`benchmarks.measure`); prints peak RSS, wall time, the start-up
   (planning: keys and the cache lookup, from the stage's log) and the number of cache files.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from benchmarks.measure import run_measured, tail
from builders.generation.base import GenResult
from builders.generation.cache import GenerationCache
from builders.generation.keys import cache_keys, selected_mask
from builders.generation.loop import teacher_revision
from builders.traces.config import TracesConfig
from core.io import PARQUET_WRITE_OPTS, iter_batches
from core.schema import PROMPT_SCHEMA

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "niv1_dev.parquet"
CHUNK = 65_536
SEED = 13
REVISION = "0" * 40


def text_pool(seed: int, size: int = 64_000_000) -> str:
    """A long run of words to cut prompts and answers from (real NIV2 words when available)."""
    rng = np.random.default_rng(seed)
    if REAL.is_file():
        words = np.array(" ".join(pl.read_parquet(REAL, columns=["inputs"])["inputs"]).split())
    else:
        words = np.array([f"w{i}" for i in range(20_000)])
    picks = words[rng.integers(0, len(words), size // 6)]
    return " ".join(picks.tolist())[:size]


def cuts(pool: str, rng: np.random.Generator, n: int, mean: float) -> list[str]:
    """`n` texts of log-normal length around `mean` characters, cut at random places of `pool`."""
    lengths = np.clip(rng.lognormal(np.log(mean) - 0.18, 0.6, n), 40, 8 * mean).astype(np.int64)
    starts = rng.integers(0, len(pool) - lengths.max(), n)
    return [pool[s : s + k] for s, k in zip(starts.tolist(), lengths.tolist(), strict=True)]


def local_teacher(folder: Path) -> str:
    """A model folder standing for a teacher nothing is sent to: the stage checks that a teacher's
    model exists (a folder with config.json, or a Hub model) before it reads the cache."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder)


def traces_params(work: Path) -> dict:
    teacher = {"backend": "vllm", "revision": REVISION, "max_model_len": 4096}
    sampling = {"temperature": 0.7, "top_p": 0.95, "max_tokens": 1024, "seed": 0}
    teachers = [
        {
            **teacher,
            "name": name,
            "model": local_teacher(work / "teachers" / name),
            "fraction": f,
            "sampling": sampling,
        }
        for name, f in (("a", 0.8), ("b", 0.2))
    ]
    terms = {"license": "Apache-2.0", "outputs_may_train_models": True, "commercial_use": True, "url": None}
    return {
        "base": {"seed": SEED},
        "license": {"teachers": {"a": terms, "b": terms}},
        "traces": {
            "teachers": teachers,
            "remove_truncated": True,
            "refusal_phrases": ["as an ai language model"],
        },
    }


def write_prompt_table(n: int, path: Path, rng: np.random.Generator, pool: str) -> None:
    """N FLAN-length prompts, sorted by id, in the prompt schema."""
    opts = {k: v for k, v in PARQUET_WRITE_OPTS.items() if k != "row_group_size"}
    with pq.ParquetWriter(path, PROMPT_SCHEMA, **opts) as writer:
        for start in range(0, n, CHUNK):
            k = min(CHUNK, n - start)
            prompts = pl.DataFrame(
                {
                    "id": [f"p{i:09d}" for i in range(start, start + k)],
                    "submix": rng.choice(["cot", "niv2", "t0", "flan2021"], k).tolist(),
                    "task_name": [f"task{t:04d}" for t in rng.integers(0, 1500, k).tolist()],
                    "template_type": "zs_opt",
                    "has_options": rng.random(k) < 0.3,
                    "system_prompt_id": rng.integers(1, 17, k).astype(np.int32),
                    "system_prompt": "You are an AI assistant. Explain your answer step by step.",
                    "question": cuts(pool, rng, k, 1_000),
                    "reference": cuts(pool, rng, k, 40),
                }
            )
            writer.write_table(prompts.select(PROMPT_SCHEMA.names).to_arrow().cast(PROMPT_SCHEMA))


def fill_cache(
    prompts: Path,
    cache_dir: Path,
    cfg: TracesConfig,
    seed: int,
    respond: Callable[[pl.DataFrame, np.random.Generator], list[str]],
    rng: np.random.Generator,
) -> int:
    """Cache one answer per (prompt, teacher) pair of `prompts` as a finished run would have.

    Through the cache's own public path: for each teacher, the prompts its `fraction` selects
    (`selected_mask`, the stage's choice) are keyed (`cache_keys`), answered by `respond`, and
    written as id-sorted shards (`write_shard`), compacted whenever they add up to
    `cfg.cache_pack_bytes` and at the end, as `generate` does. Returns the answers cached.
    """
    cache = GenerationCache(cache_dir)
    revisions = {t.name: teacher_revision(t) for t in cfg.teachers}  # a local folder's: its hash
    unpacked = written = 0
    t0 = time.perf_counter()
    for batch in iter_batches(
        prompts, ["id", "system_prompt", "question", "reference", "has_options"], CHUNK
    ):
        frame = pl.from_arrow(pa.Table.from_batches([batch]))
        assert isinstance(frame, pl.DataFrame)
        for teacher in cfg.teachers:
            chosen = frame.filter(selected_mask(frame["id"], teacher.fraction, seed))
            m = chosen.height
            if not m:
                continue
            keys = cache_keys(chosen, teacher.model, revisions[teacher.name], teacher.sampling).to_list()
            finish = np.where(rng.random(m) < 0.03, "length", "stop").tolist()
            prompt_tokens = rng.integers(100, 600, m).tolist()
            completion_tokens = rng.integers(50, 1024, m).tolist()
            results = [
                GenResult(*row)
                for row in zip(keys, chosen["id"].to_list(), respond(chosen, rng), finish, prompt_tokens,
                               completion_tokens, strict=True)
            ]  # fmt: skip
            shard = cache.write_shard(results, teacher.model, revisions[teacher.name])
            unpacked += shard.stat().st_size if shard else 0
            written += m
            if unpacked >= cfg.cache_pack_bytes:
                cache.compact(cfg.cache_pack_bytes)
                unpacked = 0
        print(f"\rcached {written:,} answers ({time.perf_counter() - t0:.0f}s)", end="", flush=True)
    cache.compact(cfg.cache_pack_bytes)  # as a run's end does
    print()
    return written


def fill(n: int, work: Path) -> None:
    """Write work/params.yaml, work/prompts.parquet and fill work/cache (see the module docstring)."""
    params = traces_params(work)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    cfg = TracesConfig.model_validate(params["traces"])
    rng = np.random.default_rng(SEED)
    pool = text_pool(SEED, min(64_000_000, max(1_000_000, 4_000 * n)))
    write_prompt_table(n, work / "prompts.parquet", rng, pool)
    fill_cache(
        work / "prompts.parquet",
        work / "cache",
        cfg,
        SEED,
        lambda df, r: cuts(pool, r, df.height, 2_000),
        rng,
    )


def run_stage(work: Path) -> dict:
    """`python -m builders.traces` on the filled folder in a child process, its memory polled."""
    paths = {"params": "params.yaml", "prompts": "prompts.parquet", "out": "traces", "cache": "cache"}
    args = [a for k, v in paths.items() for a in (f"--{k}", str(work / v))]
    log = work / "traces.log"
    res = run_measured([sys.executable, "-m", "builders.traces", *args], log)
    if res["rc"] != 0:
        raise SystemExit(f"traces failed (rc {res['rc']}):\n{tail(log)}")
    planned = [float(s) for s in re.findall(r"planned in ([0-9.]+)s", log.read_text())]
    return {"wall_s": res["wall_s"], "peak_rss_mib": round(res["peak_rss_gib"] * 1024), "planning_s": planned}


def main(argv: list[str] | None = None) -> int:
    """Fill (unless already filled) and run; print the figures."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000, help="prompts (generations: the same number)")
    ap.add_argument("--work", type=Path, required=True, help="folder for prompts, cache and outputs")
    ap.add_argument("--skip-fill", action="store_true", help="reuse a filled --work folder")
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    if not args.skip_fill:
        t0 = time.perf_counter()
        fill(args.n, args.work)
        print(f"fill: {args.n:,} prompts in {time.perf_counter() - t0:.0f}s")
    files = GenerationCache(args.work / "cache").shards()
    size = sum(p.stat().st_size for p in files)
    print(f"cache: {len(files)} files, {size / 2**30:.2f} GiB")
    t0 = time.perf_counter()
    keys = GenerationCache(args.work / "cache").keys()
    print(f"cache key column: {len(keys):,} keys read in {time.perf_counter() - t0:.1f}s")
    res = run_stage(args.work)
    stats = json.loads((args.work / "traces" / "stats.json").read_text())
    funnel = stats["funnel"]
    print(
        f"traces stage, {stats['prompts_in']:,} prompts, nothing to send: wall {res['wall_s']}s, "
        f"peak RSS {res['peak_rss_mib']:,} MiB; planning (all teachers' keys, cache lookup) "
        f"{res['planning_s'][0]}s"
        f"\n  funnel {funnel['rows_in']:,} pairs -> {funnel['rows_out']:,} rows, "
        f"removed {funnel['removed']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
