"""Stage `prompts`: FLAN-v2 rows → Orca-style prompts (zero-shot, stratified, with system messages).

Run as `python -m builders.prompts --params params.yaml --out data/prompts`. Writes
`prompts.parquet` (training prompts), `heldout.parquet` (whole tasks set aside for evaluation),
`removed.parquet` (rows rejected by a rule, with the reason) and `stats.json` (DVC metrics).
The recipe itself is `builders.recipe`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from builders.recipe import PromptsConfig, build_prompts, write_outputs
from core.config import load_base, load_section
from core.stage import run_stage

logger = logging.getLogger(__name__)


def run(params: str | Path, out: Path) -> None:
    """Load params, build the prompt tables, write the four outputs."""
    cfg = load_section(PromptsConfig, params, "prompts")
    seed = load_base(params).seed
    logger.info("params: base.seed=%s prompts=%s", seed, cfg.model_dump())
    prompts, heldout, removed, stats = build_prompts(cfg, seed)
    write_outputs(out, prompts, heldout, removed, stats)
    logger.info(
        "wrote %d prompts, %d held-out, %d removed to %s", prompts.height, heldout.height, removed.height, out
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `prompts` stage."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    return run_stage("prompts", lambda: run(args.params, args.out))


if __name__ == "__main__":
    raise SystemExit(main())
