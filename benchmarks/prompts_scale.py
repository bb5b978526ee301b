"""Benchmark: the `prompts` stage on a generated source of a real FLAN size; wall time and peak memory.

    python -m benchmarks.prompts_scale --preset niv2 --work /tmp/scale/niv2          # 10.03M rows, DPI
    python -m benchmarks.prompts_scale --preset openorca --work /tmp/scale/openorca  # 50M rows
    python -m benchmarks.prompts_scale --preset niv2 --scale 0.1 --baseline --work /tmp/scale/b

Presets (`benchmarks.flan_scale` writes the source from real words; half of each submix zero-shot):
`niv2`: one NIV2-sized submix, 10,032,000 rows of ~1.3 KB over 1,500 tasks in the
DataProvenanceInitiative layout, Orca's NIV2 budget (440K). `openorca`: 50M rows in the
Open-Orca/FLAN layout (cot 0.4M, niv2 10M, t0 25M, flan2021 14.6M), Orca's budgets. `collection`:
the DPI submixes at about their sizes (17.3M rows), Orca's budgets. `--scale` multiplies the rows.

`python -m builders.prompts` runs in a child process with the repository's `prompts:` params but
the source, budgets and `--workers`; printed: rows read, prompts written, wall time, the peak of the
summed resident memory of the stage and its workers, and the funnel. `--baseline` also runs the
in-memory stage it replaced (`tests/prompts_oracle.py`) on the same source, in its own process,
prints its figures and the ratios, and checks the two outputs are the same bytes: only at sizes
whose source fits in memory (it holds the source: ~5.5 GiB per million zero-shot NIV2 rows).
The generated source is kept in `--work` and reused (`--keep-source`), or deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from benchmarks.flan_scale import COLLECTION, GENERATOR, SubmixPlan, scaled, write_source
from benchmarks.measure import load, run_measured, tail

ROOT = Path(__file__).resolve().parents[1]
ORCA_BUDGETS = {"cot": 150_000, "niv2": 440_000, "t0": 2_000_000, "flan2021": 2_500_000}
PRESETS: dict[str, tuple[str, dict[str, SubmixPlan], dict[str, int]]] = {
    "niv2": ("dpi", {"niv2": SubmixPlan(10_032_000, 1_500, 0.5, 1_300)}, {"niv2": 440_000}),
    "openorca": (
        "openorca",
        {
            "cot": SubmixPlan(400_000, 18, 0.5, 700),
            "niv2": SubmixPlan(10_000_000, 1_500, 0.5, 1_300),
            "t0": SubmixPlan(25_000_000, 330, 0.5, 900),
            "flan2021": SubmixPlan(14_600_000, 70, 0.5, 800),
        },
        ORCA_BUDGETS,
    ),
    "collection": ("dpi", COLLECTION, ORCA_BUDGETS),
}


def prompts_params(source: Path, budgets: dict[str, int], work: Path, workers: int | None) -> Path:
    """params.yaml for the stage: the repository's `prompts:` section but source, budgets, workers."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    recipe = work / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"budgets": {**dict.fromkeys(ORCA_BUDGETS, 0), **budgets}}))
    section = params["prompts"]
    section.update(source=str(source), recipe=str(recipe), budget_scale=1.0, budgets={}, workers=workers)
    section["system_messages"] = str(ROOT / section["system_messages"])
    path = work / "params.yaml"
    path.write_text(yaml.safe_dump({"base": params["base"], "prompts": section}, sort_keys=False))
    return path


def ensure_source(work: Path, layout: str, plan: dict[str, SubmixPlan]) -> Path:
    """The generated source under `work/source` (written once; a marker records its plan)."""
    source, marker = work / "source", work / "source.json"
    want = {"layout": layout, "plan": {s: vars(p) for s, p in plan.items()}, "generator": GENERATOR}
    if marker.is_file() and json.loads(marker.read_text()) == want:
        return source
    shutil.rmtree(source, ignore_errors=True)
    write_source(source, plan, layout)
    marker.write_text(json.dumps(want))
    return source


def run_in_memory(params: Path, out: Path) -> None:
    """The in-memory stage (the baseline), writing the same four outputs."""
    from builders.prompts.config import PromptsConfig
    from builders.prompts.recipe import REMOVED_PROMPTS_SCHEMA
    from core.config import load_stage
    from core.io import write_json, write_parquet
    from core.schema import PROMPT_SCHEMA
    from tests.prompts_oracle import build_prompts

    cfg, seed = load_stage(PromptsConfig, params, "prompts")
    prompts, heldout, removed, stats = build_prompts(cfg, seed)
    write_parquet(prompts, out / "prompts.parquet", PROMPT_SCHEMA)
    write_parquet(heldout, out / "heldout.parquet", PROMPT_SCHEMA)
    write_parquet(removed, out / "removed.parquet", REMOVED_PROMPTS_SCHEMA)
    write_json(stats, out / "stats.json")


def measure(params: Path, out: Path, *, baseline: bool = False) -> dict[str, Any]:
    """Run the stage (or the baseline) in a child process; its figures and funnel."""
    if baseline:
        cmd = [sys.executable, "-m", "benchmarks.prompts_scale", "--in-memory", str(params), str(out)]
    else:
        cmd = [sys.executable, "-m", "builders.prompts", "--params", str(params), "--out", str(out)]
    res = run_measured(cmd, out.parent / f"{out.name}.log")
    if res["rc"] != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (rc {res['rc']}):\n{tail(out.parent / f'{out.name}.log')}")
    stats = json.loads((out / "stats.json").read_text())
    return {**res, "rows_read": stats["funnel"]["rows_in"], "prompts": stats["funnel"]["rows_out"],
            "funnel": stats["funnel"]["removed"]}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Generate (or reuse) the source, run the stage (and the baseline), print the figures."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="niv2")
    ap.add_argument("--scale", type=float, default=1.0, help="times the preset's rows")
    ap.add_argument(
        "--work", type=Path, default=None, help="folder for the source and outputs (default: temp)"
    )
    ap.add_argument("--workers", type=int, default=None, help="prompts.workers (default: all cores)")
    ap.add_argument("--baseline", action="store_true", help="also run the in-memory stage (small sizes only)")
    ap.add_argument("--keep-source", action="store_true", help="keep the generated source in --work")
    ap.add_argument("--in-memory", nargs=2, type=Path, metavar=("PARAMS", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.in_memory:
        run_in_memory(*args.in_memory)
        return 0
    layout, plan, budgets = PRESETS[args.preset]
    plan = scaled(plan, args.scale)
    budgets = {s: max(1, round(b * args.scale)) for s, b in budgets.items() if s in plan}
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.work, prefix="prompts-scale-") as tmp:
        work = args.work or Path(tmp)
        source = ensure_source(work, layout, plan)
        params = prompts_params(source, budgets, Path(tmp), args.workers)
        rows = sum(p.rows for p in plan.values())
        print(f"source: {rows:,} rows, {layout} layout, {sum(p.tasks for p in plan.values()):,} tasks; "
              f"budgets {budgets}; {load()}")  # fmt: skip
        stage = measure(params, Path(tmp) / "stream")
        print(f"prompts stage (streaming): {json.dumps(stage)}")
        if args.baseline:
            base = measure(params, Path(tmp) / "in_memory", baseline=True)
            print(f"in-memory stage (baseline): {json.dumps(base)}")
            same = all(
                (Path(tmp) / "stream" / f).read_bytes() == (Path(tmp) / "in_memory" / f).read_bytes()
                for f in ("prompts.parquet", "heldout.parquet", "removed.parquet", "stats.json")
            )
            print(f"same bytes as the baseline: {same}; peak RSS ratio (stage / baseline): "
                  f"{stage['peak_rss_gib'] / max(base['peak_rss_gib'], 1e-9):.2f}; wall ratio: "
                  f"{stage['wall_s'] / max(base['wall_s'], 1e-9):.2f}; {load()}")  # fmt: skip
            if not same:
                return 1
        if not args.keep_source and args.work is not None:
            shutil.rmtree(work / "source", ignore_errors=True)
            (work / "source.json").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
