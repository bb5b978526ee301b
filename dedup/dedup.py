"""DVC stage `dedup`: decontaminate and deduplicate the licensed prompts.

python -m dedup.dedup --params params.yaml --prompts data/license/prompts.parquet --out data/dedup
"""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl

from core.config import load_stage
from core.io import write_json, write_parquet
from core.stage import stage_main
from dedup.audit import REMOVED_DEDUP_SCHEMA
from dedup.config import DedupConfig
from dedup.corpus import Corpus
from dedup.decontam import load_eval_texts
from dedup.outputs import read_previous, write_kept
from dedup.pipeline import DedupResult, check_corpus, dedup_corpus

logger = logging.getLogger(__name__)


def run(params: Path, prompts: Path, out: Path) -> DedupResult:
    """Load params and inputs, deduplicate, write prompts.parquet, removed.parquet, stats.json."""
    cfg, seed = load_stage(DedupConfig, params, "dedup")
    eval_sets = {spec.name: load_eval_texts(spec) for spec in cfg.eval_sets}
    previous = read_previous(cfg.previous_release) if cfg.previous_release else None
    corpus = Corpus.from_parquet(prompts)
    check_corpus(corpus)
    result = dedup_corpus(corpus, cfg, seed, eval_sets, previous)
    keep_ids = corpus.ids.filter(pl.Series(result.keep)).to_arrow()
    write_kept(str(prompts), keep_ids, out / "prompts.parquet")
    write_parquet(result.removed, out / "removed.parquet", REMOVED_DEDUP_SCHEMA)
    write_json(result.stats, out / "stats.json")
    write_json(result.timing, out / "run.json")
    return result


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `dedup` stage."""
    return stage_main(run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
