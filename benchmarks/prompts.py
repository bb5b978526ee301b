"""Benchmark of the `prompts` stage on a generated FLAN-format source.

`python -m benchmarks.prompts --rows 1000000` writes a synthetic source (four submixes,
DPI layout, a fifth of the rows few-shot), then runs, each in a fresh process so that peak
memory is its own: the stage's `build_prompts` (read, validate, id, dedupe, sample, assign
system messages) and, as the baseline on the same rows, the same steps written as plain Python
loops over rows. Prints rows/s, peak RSS and their ratios.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import resource
import tempfile
import time
from pathlib import Path

import yaml


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run_stage(source: str, budgets: dict[str, int], q: mp.Queue) -> None:
    from builders.prompts.config import PromptsConfig
    from builders.prompts.recipe import build_prompts
    from core.config import parse_section

    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as d:
        recipe = Path(d) / "recipe.yaml"
        recipe.write_text(yaml.safe_dump({"budgets": budgets}))
        params = yaml.safe_load((root / "params.yaml").read_text())["prompts"]
        params.update(source=source, recipe=str(recipe), budget_scale=1.0, budgets={}, heldout_tasks=[])
        params["system_messages"] = str(root / params["system_messages"])
        cfg = parse_section(PromptsConfig, params, section="prompts")
        start = time.perf_counter()
        prompts, _, _, stats = build_prompts(cfg, seed=1)
        q.put(
            {
                "seconds": time.perf_counter() - start,
                "rows_in": stats["funnel"]["rows_in"],
                "rows_out": prompts.height,
                "peak_mib": _peak_mib(),
            }
        )


def _run_baseline(source: str, budgets: dict[str, int], q: mp.Queue) -> None:
    """The same stage written as plain Python loops over rows (the baseline).

    Reads rows with pyarrow, skips empty and few-shot rows, computes the same sha256 ids, drops
    duplicate ids, runs Orca's sequential draw (a task uniformly, then a query), and draws a
    system message per sampled row.
    """
    import hashlib

    import pyarrow.parquet as pq

    start = time.perf_counter()
    rng = random.Random(1)
    rows_in = rows_out = 0
    for submix, budget in budgets.items():
        tasks: dict[str, list[dict]] = {}
        seen: set[str] = set()
        for f in sorted(Path(source).glob(f"{submix}_submix_original/**/*.parquet")):
            for row in pq.read_table(f).to_pylist():
                rows_in += 1
                if not row["template_type"].startswith("zs") or not row["inputs"].strip():
                    continue
                key = f"{submix}\x1f{row['task_name']}\x1f{row['template_type']}\x1f{row['inputs']}\x1f"
                row["id"] = hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]
                if row["id"] in seen:
                    continue
                seen.add(row["id"])
                tasks.setdefault(row["task_name"], []).append(row)
        active = [t for t in tasks if tasks[t]]
        sampled = []
        while len(sampled) < budget and active:
            t = rng.choice(active)
            pool = tasks[t]
            k = rng.randrange(len(pool))
            pool[k], pool[-1] = pool[-1], pool[k]
            sampled.append(pool.pop())
            if not pool:
                active.remove(t)
        for row in sampled:
            row["system_prompt_id"] = rng.choices(
                [3, 4, 7, 8, 10] if "OPTIONS" in row["inputs"] else [3, 4, 7]
            )[0]
        rows_out += len(sampled)
    q.put(
        {
            "seconds": time.perf_counter() - start,
            "rows_in": rows_in,
            "rows_out": rows_out,
            "peak_mib": _peak_mib(),
        }
    )


def _measure(target, *args) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q))
    p.start()
    out = q.get()
    p.join()
    return out


def main(argv: list[str] | None = None) -> int:
    """Generate the source, run both measurements, print the figures."""
    from benchmarks.synthetic import synthetic_table, write_source

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--tasks", type=int, default=200, help="tasks per submix")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    submixes = ["cot", "niv2", "t0", "flan2021"]
    per_submix = args.rows // len(submixes)
    rng = random.Random(0)
    with tempfile.TemporaryDirectory(dir=args.workdir) as d:
        tables = {}
        for k, s in enumerate(submixes):
            weights = [rng.paretovariate(1.2) for _ in range(args.tasks)]
            sizes = [max(1, int(per_submix * w / sum(weights))) for w in weights]
            tables[s] = synthetic_table(s, sizes, seed=k, fs_share=0.2)
        source = write_source(Path(d) / "flan", tables, "dpi", shards=4)
        rows = sum(t.num_rows for t in tables.values())
        budgets = {s: int(t.num_rows * 0.8 * 0.5) for s, t in tables.items()}
        del tables
        stage = _measure(_run_stage, str(source), budgets)
        base = _measure(_run_baseline, str(source), budgets)
    report = {
        "source_rows": rows,
        "stage": {**stage, "rows_per_s": round(stage["rows_in"] / stage["seconds"])},
        "baseline_python_loop": {**base, "rows_per_s": round(base["rows_in"] / base["seconds"])},
    }
    report["speedup_vs_baseline"] = round(
        report["stage"]["rows_per_s"] / report["baseline_python_loop"]["rows_per_s"], 2
    )
    report["peak_memory_ratio_vs_baseline"] = round(stage["peak_mib"] / base["peak_mib"], 2)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
