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
- recall of the planted edits (the copy ends in its original's cluster).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from benchmarks.real_data import REAL_FILES, instance_jaccard, load_real, numbers, plant_edits

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
    from builders.license import main as license_main
    from builders.prompts import main as prompts_main
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
    """`df` with `sid`, the id the prompts stage gives each row (`builders.sampling.add_ids`)."""
    from builders.sampling import add_ids

    return add_ids(df.rename({"id": "bench_id"})).rename({"id": "sid", "bench_id": "id"})


def score(df: pl.DataFrame, removed: pl.DataFrame, threshold: float, variants: str) -> dict[str, Any]:
    """Judge the dedup stage's removals of `df` (with `sid`) against the ground truth."""
    # byte-identical rows of one task share a stage id: the first (by bench id) stands for them;
    # a row is under every template whose rendering of its example gave that same text
    templates = df.group_by("sid").agg(pl.col("template").unique().sort().alias("templates"))
    rows = df.sort("id").unique("sid", keep="first", maintain_order=True).join(templates, on="sid")
    info = rows.select("sid", "example", "instance", "templates", "submix", "task_name", "kind")
    merges = (
        removed.filter(pl.col("reason").is_in(["near_duplicate", "template_variant"]))
        .select(pl.col("id").alias("sid"), "kept_id", "reason", "similarity")
        .join(info, on="sid")
        .join(info.rename(lambda c: f"kept_{c}").rename({"kept_sid": "kept_id"}), on="kept_id")
    )
    pairs = list(zip(merges["instance"].to_list(), merges["kept_instance"].to_list(), strict=True))
    jac = [instance_jaccard(a, b) for a, b in pairs]
    other_numbers = [numbers(a) != numbers(b) for a, b in pairs]
    merges = merges.with_columns(
        pl.Series("instance_jaccard", jac, dtype=pl.Float64),
        pl.Series("other_numbers", other_numbers, dtype=pl.Boolean),
    ).with_columns(
        (
            (pl.col("example") != pl.col("kept_example"))
            & ((pl.col("instance_jaccard") < 0.5) | pl.col("other_numbers"))
        ).alias("false_merge"),
        (
            (pl.col("example") == pl.col("kept_example"))
            & (pl.col("templates").list.set_intersection("kept_templates").list.len() == 0)
        ).alias("variant"),
    )
    # planted edits: the copy must end in its original's cluster
    cluster = rows.select("sid").join(
        removed.filter(pl.col("kept_id").is_not_null()).select(pl.col("id").alias("sid"), "kept_id"),
        on="sid",
        how="left",
    )
    cluster = cluster.select("sid", pl.coalesce("kept_id", "sid").alias("cluster"))
    sid_of = df.select("id", "sid")
    edits = (
        df.filter(pl.col("kind") == "edit")
        .select("sid", "original", "submix")
        .join(sid_of.rename({"id": "original", "sid": "original_sid"}), on="original")
        .join(cluster, on="sid")
        .join(cluster.rename({"sid": "original_sid", "cluster": "original_cluster"}), on="original_sid")
    )
    out: dict[str, Any] = {}
    for submix in [None, *sorted(df["submix"].unique().to_list())]:
        m = merges if submix is None else merges.filter(pl.col("submix") == submix)
        e = edits if submix is None else edits.filter(pl.col("submix") == submix)
        near = m.filter(pl.col("reason") == "near_duplicate")
        caught = int((e["cluster"] == e["original_cluster"]).sum())
        fm = int(m["false_merge"].sum())
        out[submix or "all"] = {
            "prompts": int(rows.filter(pl.col("submix") == submix).height if submix else rows.height),
            "near_removals": m.height,
            "false_merges": fm,
            "false_merge_rate": round(fm / m.height, 4) if m.height else 0.0,
            "other_example_merges": int((m["example"] != m["kept_example"]).sum()),
            "chained": int((m["similarity"] < threshold - 1e-9).sum()),
            "variants_removed": int(near["variant"].sum()) if variants == "keep" else int(m["variant"].sum()),
            "planted_edits": e.height,
            "edits_removed": caught,
            "edit_recall": round(caught / e.height, 4) if e.height else 1.0,
        }
    examples = merges.filter("false_merge").sort("sid").head(10)
    out["false_merge_examples"] = [
        {"task": t, "instance": a[:160], "kept_instance": b[:160], "similarity": round(s, 3)}
        for t, a, b, s in examples.select("task_name", "instance", "kept_instance", "similarity").iter_rows()
    ]
    return out


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
        "scores": score(df, removed, cfg["threshold"], variants),
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
    ap.add_argument("--edits", type=int, default=400, help="planted light edits per file")
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
