"""Real FLAN prompts through the `prompts -> license -> dedup` stages, judged per submix.

    python -m benchmarks.dedup_stages [--real niv1_dev flan_dev] [--variants keep] [--edits 400]

Each real file of `../shared/data/real` (`benchmarks.real_data`) plus planted light edits (5% of
the words of a prompt of 30+ words substituted, inserted or deleted, numbers left alone) is
written in the DataProvenanceInitiative layout (`{submix}_submix_original/data/*.parquet`); the
three stages run on it with the repository's params.yaml, except: that source, `budget_scale:
1.0` (every prompt fits), no held-out tasks, every license use, unknown and unspecified license
allowed, and `template_variants` as asked. Printed per file and per submix:

- near-duplicate removals, and false merges among them: a removed row whose kept row is another
  example (another instance) with instance word 3-gram Jaccard < 0.5 or other numbers;
- chains: removals whose content similarity to their kept row is below the threshold;
- template variants removed although `keep` asked to keep them (the same example, another
  template);
- recall of the planted edits (the copy ends in its original's cluster), over every edit and over
  the edits that leave the original's example (`same_example_edit_recall`): an edit that leaves
  the instance sharing < 50% of its word 3-grams with the original's (a word changed in a
  five-word question) makes, by the false-merge rule above, another example, which a merge would
  count as a false merge; `other_example_edits_removed` counts those removed anyway.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import polars as pl
import yaml

from benchmarks.real_data import REAL_FILES, load_real, plant_edits, score_removals

FIELDS = ("inputs", "targets", "task_source", "task_name", "template_type")


def write_source(df: pl.DataFrame, root: Path) -> Path:
    """The prompts in the DPI layout (five FLAN columns), one Parquet file per submix."""
    for (submix,), part in df.group_by("submix"):
        folder = root / f"{submix}_submix_original" / "data"
        folder.mkdir(parents=True)
        part.sort("id").select(
            pl.col("question").alias("inputs"),
            pl.lit("").alias("targets"),
            "task_source",
            "task_name",
            "template_type",
        ).write_parquet(folder / "train-00000-of-00001.parquet")
    return root


def stage_params(base: Path, source: Path, out: Path, variants: str, overrides: dict | None = None) -> Path:
    """params.yaml with the overrides named in the module docstring (and `dedup` overrides)."""
    params = yaml.safe_load(base.read_text())
    params["dedup"].update(overrides or {})
    params["prompts"].update(source=str(source), budget_scale=1.0, heldout_tasks=[])
    params["license"].update(
        allowed_uses=["commercial", "non-commercial", "academic-only"],
        allow_unknown=True,
        allow_unspecified=True,
    )
    params["dedup"]["template_variants"] = variants
    out.write_text(yaml.safe_dump(params, sort_keys=False))
    return out


def run_stages(
    df: pl.DataFrame, params: Path, variants: str, work: Path, overrides: dict | None = None
) -> None:
    """Run the three stages on `df` (a `plant_edits` frame); outputs under `work`."""
    from builders.license.__main__ import main as license_main
    from builders.prompts.__main__ import main as prompts_main
    from dedup.dedup import main as dedup_main

    p = stage_params(params, write_source(df, work / "src"), work / "params.yaml", variants, overrides)
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


def stage_ids(df: pl.DataFrame) -> pl.DataFrame:
    """`df` with `sid`, the id the prompts stage gives each row (`builders.prompts.sampling.add_ids`)."""
    from builders.prompts.sampling import add_ids

    return add_ids(df.rename({"id": "bench_id"})).rename({"id": "sid", "bench_id": "id"})


def run(
    name: str,
    real_path: Path,
    params: Path,
    variants: str,
    edits: int,
    work: Path,
    overrides: dict | None = None,
) -> dict:
    """Plant edits in one real file, run the stages, score the removals."""
    df = stage_ids(plant_edits(load_real(real_path), edits=edits))
    run_stages(df, params, variants, work, overrides)
    removed = pl.read_parquet(work / "dedup/removed.parquet")
    stats = json.loads((work / "dedup/stats.json").read_text())
    cfg = yaml.safe_load((work / "params.yaml").read_text())["dedup"]
    return {
        "file": name,
        "variants": variants,
        "rows": df.height,
        "scores": score_removals(df, removed, cfg["threshold"], variants),
        "dedup_removed": stats["funnel"]["removed"],
        "template_variants": stats["template_variants"],
        "numbers": stats.get("numbers"),
        "short_content": stats.get("short_content"),
    }


def main(argv: list[str] | None = None) -> int:
    """Run and print the scores as JSON, one object per real file."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", nargs="+", default=list(REAL_FILES), help="names or paths of real files")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--variants", choices=["keep", "merge"], default="keep")
    ap.add_argument("--edits", type=int, default=1500, help="planted light edits per file")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="dedup params to override")
    args = ap.parse_args(argv)
    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    for item in args.real:
        path = REAL_FILES.get(item, Path(item))
        if not path.is_file():
            print(f"dedup_stages: {path} not found: skipped")
            continue
        with tempfile.TemporaryDirectory(prefix="dedup-stages-") as tmp:
            res = run(path.stem, path, args.params, args.variants, args.edits, Path(tmp), overrides)
        print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
