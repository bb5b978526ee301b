"""Benchmark: Orca's recipe on a source of the whole FLAN collection's size, from prompts to train's data.

    python -m benchmarks.orca_scale --work /tmp/scale/orca            # 17.3M source rows, ~2 hours here
    python -m benchmarks.orca_scale --work /tmp/x --scale 0.0005      # a smoke run

1. Source: the DataProvenanceInitiative submixes at about their sizes (`flan_scale.COLLECTION`:
   cot 0.18M, niv2 10.07M, t0 1.65M, flan2021 5.36M rows, half of each zero-shot), generated from
   real words in the DPI layout.
2. The stages, each `python -m <stage>` in its own process with the repository's params except:
   that source and Orca's budgets (`--scale` times them); every license use, unknown and unspecified
   license allowed (so the volume reaches the later stages; the funnel still counts each class);
   two teachers as in Orca (`a` answers every prompt, `b` a seeded 30%); `verify.drop_wrong: true`.
   `prompts -> license -> dedup -> traces -> verify -> release`. Before `traces`, the generation
   cache is filled with an answer for every (prompt, teacher) pair through the cache's public
   functions (`traces_scale.fill_cache`: an explanation of real words ending "So the answer is X.",
   X the reference for 70% of them), so nothing is sent: this is a finished or resumed run.
3. Train's data: `load_dataset` of each teacher's release config, `tokenize_dataset` with
   `num_proc` = the cores, and the packing plan (the tiny student's tokenizer, max_length 2048; no
   optimiser step).

Printed: each step's wall time and peak memory of its process and its workers, polled
(`benchmarks.measure`): resident sizes summed (a page that processes share, such as a forked
`num_proc` worker's copy-on-write pages of its parent, counted once per process) and proportional
set sizes summed (each shared page split among its sharers: what the machine holds), and the
funnel. `--from "train data"` measures train's data again on the release of an earlier run.
Outputs a later step no longer needs are deleted as the run goes (`--keep` keeps them), and the
work folder's generated source unless `--keep-source`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from benchmarks.flan_scale import COLLECTION, Words, scaled
from benchmarks.measure import load, run_measured, tail
from benchmarks.prompts_scale import ORCA_BUDGETS, ensure_source
from benchmarks.traces_scale import REVISION, fill_cache, local_teacher
from builders.traces.config import TracesConfig

ROOT = Path(__file__).resolve().parents[1]
STEPS = ["prompts", "license", "dedup", "traces", "verify", "release", "train data"]
SEED = 20231101
CORRECT_SHARE = 0.7


def pipeline_params(work: Path, source: Path, budgets: dict[str, int], student: Path) -> Path:
    """params.yaml of the run: the repository's, with the overrides in the module docstring."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    (work / "recipe.yaml").write_text(
        yaml.safe_dump({"budgets": {**dict.fromkeys(ORCA_BUDGETS, 0), **budgets}})
    )
    params["prompts"].update(
        source=str(source),
        recipe=str(work / "recipe.yaml"),
        budget_scale=1.0,
        budgets={},
        system_messages=str(ROOT / params["prompts"]["system_messages"]),
    )
    terms = {"license": "Apache-2.0", "outputs_may_train_models": True, "commercial_use": True, "url": None}
    params["license"].update(
        allowed_uses=["commercial", "non-commercial", "academic-only"],
        allow_unknown=True,
        allow_unspecified=True,
        teachers={"a": terms, "b": terms},
    )
    for item in params["dedup"]["eval_sets"]:
        if "path" in item:
            item["path"] = str(ROOT / item["path"])
    teacher = {
        "backend": "vllm",
        "revision": REVISION,
        "max_model_len": 4096,
        "dtype": "auto",
        "sampling": {"temperature": 0.7, "top_p": 0.95, "max_tokens": 1024, "seed": 0},
    }
    params["traces"].update(
        teachers=[
            {**teacher, "name": "a", "model": local_teacher(work / "teachers/a"), "fraction": 1.0},
            {**teacher, "name": "b", "model": local_teacher(work / "teachers/b"), "fraction": 0.3},
        ],
        remove_truncated=True,
    )
    params["verify"].update(drop_wrong=True)
    params["train"].update(
        release=str(work / "release"),
        base_model=str(student),
        max_length=2048,
        num_proc=os.cpu_count(),
        overlong="truncate",
        phases=[
            {"teacher": "a", "epochs": 1, "learning_rate": 1e-4},
            {"teacher": "b", "epochs": 1, "learning_rate": 1e-4},
        ],
    )
    path = work / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def pipeline_file(work: Path) -> Path:
    """The repository's dvc.yaml with every stage folder in `work` (the release reads the funnel
    from the `stats.json` of each filtering stage it names)."""
    doc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    doc["vars"] = [{"dirs": {"data": ".", **{s: s for s in STEPS}, "models": "models"}}]
    path = work / "dvc.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def responses(words: Words) -> Any:
    """An answer maker for `fill_cache`: ~160 real words, then the reference (70%) or another answer."""

    def respond(df: pl.DataFrame, rng: np.random.Generator) -> list[str]:
        body = words.texts(rng, rng.poisson(160, df.height) + 1)
        other = words.texts(rng, rng.integers(1, 4, df.height))
        right = pl.Series(rng.random(df.height) < CORRECT_SHARE)
        final = pl.select(pl.when(right).then(df["reference"].str.slice(0, 200)).otherwise(other)).to_series()
        return (body + ". So the answer is " + final + ".").to_list()

    return respond


def train_data(params: Path, out: Path) -> None:
    """Train's data preparation (in a child process): each phase's release config through
    `load_dataset`, tokenized and packed as `train.sft` does; figures to `out`."""
    from transformers import AutoTokenizer

    from core.config import load_section
    from core.io import write_json
    from train.config import TrainConfig
    from train.format import tokenize_dataset
    from train.sft import load_release, plan_phase

    cfg = load_section(TrainConfig, params, "train")
    tokenizer = AutoTokenizer.from_pretrained(cfg.base_model)
    figures = {}
    for phase in cfg.phases:
        ds = load_release(cfg, phase)
        tokenized, stats = tokenize_dataset(
            ds, tokenizer, max_length=cfg.max_length, overlong=cfg.overlong, num_proc=cfg.num_proc
        )
        packs, tokens, labels = plan_phase(tokenized, cfg)
        figures[phase.teacher] = {
            **stats.as_dict(),
            "sequences": len(packs),
            "tokens": tokens,
            "label_tokens": labels,
        }
    write_json(figures, out)


def build_student(folder: Path, words: Words) -> Path:
    """The tiny student's tokenizer and model (random weights), its tokenizer trained on real words."""
    from builders.tiny_llama import build_tiny_llama

    if (folder / "config.json").is_file():
        return folder
    texts = words.texts(np.random.default_rng(SEED), np.full(20_000, 60)).to_list()
    return build_tiny_llama(folder, texts, vocab_size=1024, max_position_embeddings=2048, seed=SEED)


class Run:
    """The steps of the run: each measured, its figures kept for the table."""

    def __init__(self, work: Path, params: Path, keep: bool, skip: list[str]) -> None:
        self.work, self.params, self.keep, self.skip = work, params, keep, skip
        self.rows: list[dict[str, Any]] = []

    def stage(self, name: str, module: str, **paths: Path) -> dict[str, Any] | None:
        if name in self.skip:
            print(f"{name}: outputs of an earlier run in {self.work / name} reused", flush=True)
            return None
        args = [
            a
            for k, v in {"params": self.params, **paths}.items()
            for a in (f"--{k.replace('_', '-')}", str(v))
        ]
        return self.measure(name, [sys.executable, "-m", module, *args])

    def measure(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
        log = self.work / "logs" / f"{name}.log"
        log.parent.mkdir(exist_ok=True)
        res = run_measured(cmd, log, env=env)
        if res["rc"] != 0:
            raise SystemExit(f"{name} failed (rc {res['rc']}), log {log}:\n{tail(log)}")
        res["step"] = name
        self.rows.append(res)
        print(
            f"{name}: {res['wall_s']}s, peak RSS {res['peak_rss_gib']} GiB, "
            f"PSS {res['peak_pss_gib']} GiB ({load()})",
            flush=True,
        )
        return res

    def drop(self, *paths: Path) -> None:
        """Delete outputs no later step reads (unless --keep)."""
        if self.keep:
            return
        for p in paths:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def funnel_rows(work: Path, train: dict[str, Any]) -> list[tuple[str, int, int, dict[str, int]]]:
    """(step, rows in, rows out, removed by reason) of every filtering stage, then train's data."""
    out = []
    for stage in ("prompts", "license", "dedup", "traces", "verify"):
        f = json.loads((work / stage / "stats.json").read_text())["funnel"]
        out.append((stage, f["rows_in"], f["rows_out"], f["removed"]))
    for teacher, t in train.items():
        out.append((f"train data ({teacher})", t["rows_in"], t["examples"], t["removed"]))
    return out


def main(argv: list[str] | None = None) -> int:
    """Generate (or reuse) the source, run every step, print the table and the funnel."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="folder for the source, outputs and logs")
    ap.add_argument("--scale", type=float, default=1.0, help="times the collection's rows and Orca's budgets")
    ap.add_argument("--keep", action="store_true", help="keep every step's outputs")
    ap.add_argument("--keep-source", action="store_true", help="keep the generated source for another run")
    ap.add_argument(
        "--from",
        dest="start",
        choices=STEPS,
        default=STEPS[0],
        help="reuse the outputs in --work of the steps before this one (a run stopped there)",
    )
    ap.add_argument("--train-data", nargs=2, type=Path, metavar=("PARAMS", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.train_data:
        train_data(*args.train_data)
        return 0
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    later = STEPS[STEPS.index(args.start) :]
    for out in (*later, "cache", "verify_cache", "hf"):
        shutil.rmtree(work / out, ignore_errors=True)
    plan = scaled(COLLECTION, args.scale)
    budgets = {s: max(1, round(b * args.scale)) for s, b in ORCA_BUDGETS.items()}
    words = Words.load(SEED)
    sizes = ", ".join(f"{s} {p.rows:,}" for s, p in plan.items())
    print(
        f"source: {sum(p.rows for p in plan.values()):,} rows ({sizes}), budgets {budgets}; {load()}",
        flush=True,
    )
    source = ensure_source(work, "dpi", plan) if args.start == "prompts" else work / "source"
    params = pipeline_params(work, source, budgets, build_student(work / "student", words))
    run = Run(work, params, args.keep, skip=STEPS[: STEPS.index(args.start)])
    w = work
    run.stage("prompts", "builders.prompts", out=w / "prompts")
    if not args.keep_source:
        run.drop(source, work / "source.json")
    run.stage("license", "builders.license", prompts=w / "prompts/prompts.parquet", out=w / "license")
    run.drop(w / "prompts/prompts.parquet")
    run.stage("dedup", "dedup.dedup", prompts=w / "license/prompts.parquet", out=w / "dedup")
    run.drop(w / "license/prompts.parquet")
    if "traces" not in run.skip:
        cfg = TracesConfig.model_validate(yaml.safe_load(params.read_text())["traces"])
        rng = np.random.default_rng(SEED)
        answers = fill_cache(w / "dedup/prompts.parquet", w / "cache", cfg, SEED, responses(words), rng)
        print(f"generation cache filled: {answers:,} answers", flush=True)
    run.stage(
        "traces", "builders.traces", prompts=w / "dedup/prompts.parquet", out=w / "traces", cache=w / "cache"
    )
    run.drop(w / "dedup/prompts.parquet", w / "cache")
    run.stage(
        "verify",
        "builders.verify",
        traces=w / "traces/traces.parquet",
        out=w / "verify",
        cache=w / "verify_cache",
    )
    run.drop(w / "traces/traces.parquet")
    run.stage(
        "release",
        "cards.release",
        traces=w / "verify/traces.parquet",
        traces_meta=w / "traces/meta",
        heldout=w / "prompts/heldout.parquet",
        license_summary=w / "license/license_summary.json",
        out=w / "release",
        pipeline=pipeline_file(w),
    )
    run.drop(w / "verify/traces.parquet")
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.orca_scale",
        "--work",
        str(w),
        "--train-data",
        str(params),
        str(w / "train_data.json"),
    ]
    run.measure("train data", cmd, env={"HF_DATASETS_CACHE": str(w / "hf"), "HF_DATASETS_OFFLINE": "1"})
    run.drop(w / "hf")
    train = json.loads((w / "train_data.json").read_text())
    print(
        "\n| step | wall (s) | peak RSS, summed (GiB) | peak PSS, summed (GiB) | largest process (GiB) |"
        "\n|---|---:|---:|---:|---:|"
    )
    for r in run.rows:
        hwm = r["peak_process_hwm_gib"]
        print(
            f"| {r['step']} | {r['wall_s']:,.0f} | {r['peak_rss_gib']:.2f} | {r['peak_pss_gib']:.2f} "
            f"| {hwm:.2f} |"
        )
    print("\n| step | rows in | rows out | removed |\n|---|---:|---:|---|")
    for step, rows_in, rows_out, removed in funnel_rows(w, train):
        print(
            f"| {step} | {rows_in:,} | {rows_out:,} | {', '.join(f'{k} {v:,}' for k, v in removed.items())} |"
        )
    for teacher, t in train.items():
        print(
            f"train data ({teacher}): {t['examples']:,} examples in {t['sequences']:,} packed sequences, "
            f"{t['tokens']:,} tokens ({t['label_tokens']:,} labelled), {t['truncated']:,} truncated"
        )
    for figure in ("peak_rss_gib", "peak_pss_gib"):
        over = [r["step"] for r in run.rows if r[figure] > 6.0]
        print(f"every step's {figure} <= 6 GiB: {not over}{f' (over: {over})' if over else ''}")
    print(load())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
