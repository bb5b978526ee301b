"""DVC stage `dedup`: decontaminate and deduplicate the licensed prompts.

python -m dedup.dedup --params params.yaml --prompts data/license/prompts.parquet --out data/dedup
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import polars as pl

from core.config import load_base, load_section
from core.io import write_json, write_parquet
from core.stage import run_stage
from dedup.audit import REMOVED_DEDUP_SCHEMA
from dedup.config import DedupConfig
from dedup.corpus import Corpus
from dedup.decontam import load_eval_texts
from dedup.outputs import read_previous, write_kept
from dedup.pipeline import DedupResult, check_corpus, dedup_corpus

logger = logging.getLogger(__name__)


def run(params_path: str, prompts_path: str, out_dir: str) -> DedupResult:
    """Load params and inputs, deduplicate, write prompts.parquet, removed.parquet, stats.json."""
    cfg = load_section(DedupConfig, params_path, "dedup")
    seed = load_base(params_path).seed
    logger.info("dedup params: %s (base.seed=%d)", cfg.model_dump(), seed)
    eval_sets = {spec.name: load_eval_texts(spec) for spec in cfg.eval_sets}
    previous = read_previous(cfg.previous_release) if cfg.previous_release else None
    corpus = Corpus.from_parquet(prompts_path)
    check_corpus(corpus)
    result = dedup_corpus(corpus, cfg, seed, eval_sets, previous)
    keep_ids = corpus.ids.filter(pl.Series(result.keep)).to_arrow()
    out = Path(out_dir)
    write_kept(prompts_path, keep_ids, out / "prompts.parquet")
    write_parquet(result.removed, out / "removed.parquet", REMOVED_DEDUP_SCHEMA)
    write_json(result.stats, out / "stats.json")
    return result


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `dedup` DVC stage."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prompts", required=True, help="input prompt table (Parquet)")
    parser.add_argument("--out", required=True, help="output folder")
    args = parser.parse_args(argv)
    return run_stage("dedup", lambda: run(args.params, args.prompts, args.out))


if __name__ == "__main__":
    raise SystemExit(main())
