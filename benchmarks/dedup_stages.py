"""Real NIV2 prompts through the `prompts -> license -> dedup` stages, scored against ground truth.

    python -m benchmarks.dedup_stages [--real ../shared/data/real/niv1_dev.parquet] [--variants keep]

The zero-shot prompts of `niv1_dev.parquet` plus planted light edits (5% of a prompt's words
substituted, inserted or deleted; `benchmarks.dedup_data.real_corpus`) are written in the
DataProvenanceInitiative layout (`niv2_submix_original/data/*.parquet`); the three stages run
on it with the repository's params.yaml, except: that source, `budget_scale: 1.0` (every prompt
fits), no held-out tasks, and every license use, unknown and unspecified license allowed.
Prints the false merges (near-duplicate removals whose instance texts share < 50% of their word
3-grams) and the share of planted edits removed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import polars as pl
import yaml

from benchmarks.dedup import REAL
from benchmarks.dedup_data import real_corpus, real_scores


def write_source(real: pl.DataFrame, root: Path) -> Path:
    """The prompts in the DPI layout (five FLAN columns), one Parquet file."""
    folder = root / "niv2_submix_original" / "data"
    folder.mkdir(parents=True)
    real.select(
        pl.col("question").alias("inputs"),
        pl.lit("").alias("targets"),
        pl.lit("NIv2").alias("task_source"),
        "task_name",
        pl.lit("zs_opt").alias("template_type"),
    ).write_parquet(folder / "train-00000-of-00001.parquet")
    return root


def stage_params(base: Path, source: Path, out: Path, variants: str) -> Path:
    """params.yaml with the overrides named in the module docstring."""
    params = yaml.safe_load(base.read_text())
    params["prompts"].update(source=str(source), budget_scale=1.0, heldout_tasks=[])
    params["license"].update(
        allowed_uses=["commercial", "non-commercial", "academic-only"],
        allow_unknown=True,
        allow_unspecified=True,
    )
    params["dedup"]["template_variants"] = variants
    out.write_text(yaml.safe_dump(params, sort_keys=False))
    return out


def run(real_path: Path, params: Path, variants: str, work: Path) -> dict:
    """Run the three stages on the planted corpus and score the dedup stage's removals."""
    from builders.license import main as license_main
    from builders.prompts import main as prompts_main
    from dedup.dedup import main as dedup_main

    real = real_corpus(real_path)
    p = stage_params(params, write_source(real, work / "src"), work / "params.yaml", variants)
    stages = (
        ("prompts", prompts_main, []),
        ("license", license_main, ["--prompts", str(work / "prompts" / "prompts.parquet")]),
        ("dedup", dedup_main, ["--prompts", str(work / "license" / "prompts.parquet")]),
    )
    for name, stage, args in stages:
        # a stage reports a pipeline error on stderr and returns its exit code (2) instead of raising
        rc = stage(["--params", str(p), *args, "--out", str(work / name)])
        if rc != 0:
            print(f"dedup_stages: the {name} stage failed (exit {rc}); stopping", file=sys.stderr)
            raise SystemExit(rc)
    staged = pl.read_parquet(work / "license/prompts.parquet", columns=["id", "question"])
    # stage ids are the pipeline's own; the question text (unchanged by the stages, and unique
    # after the prompts stage drops repeated ids) maps them back, for originals too
    sid = staged.rename({"id": "sid"})
    originals = real.select(pl.col("id").alias("original"), pl.col("question").alias("oq"))
    frame = (
        real.unique("question", keep="first", maintain_order=True)
        .join(sid, on="question")
        .join(originals, on="original", how="left")
        .join(sid.rename({"question": "oq", "sid": "original_sid"}), on="oq", how="left")
        .drop("id", "original", "oq")
        .rename({"sid": "id", "original_sid": "original"})
    )
    removed = pl.read_parquet(work / "dedup/removed.parquet")
    scores = real_scores(frame, removed)
    stats = json.loads((work / "dedup/stats.json").read_text())
    return {
        "prompts_in": real.height,
        "prompts_after_license": staged.height,
        "distinct_prompts": frame.height,
        **scores,
        "dedup_removed": stats["funnel"]["removed"],
        "template_variants": stats["template_variants"],
    }


def main(argv: list[str] | None = None) -> int:
    """Run and print the scores as JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", type=Path, default=REAL)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--variants", choices=["keep", "merge"], default="keep")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dedup-stages-") as tmp:
        res = run(args.real, args.params, args.variants, Path(tmp))
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
