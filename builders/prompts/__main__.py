"""Stage `prompts`: FLAN-v2 rows → Orca-style prompts (zero-shot, stratified, with system messages).

Run as `python -m builders.prompts --params params.yaml --out data/prompts`. Writes
`prompts.parquet` (training prompts), `heldout.parquet` (whole tasks set aside for evaluation),
`removed.parquet` (rows rejected by a rule, with the reason) and `stats.json` (DVC metrics).
The recipe itself is `builders.prompts.recipe`; it streams (`prompts.workers` processes, memory bounded by
a bucket of tasks, not the source).
"""

from __future__ import annotations

import logging
from pathlib import Path

from builders.prompts.config import PromptsConfig
from builders.prompts.recipe import write_prompts
from core.config import load_stage
from core.stage import stage_main

logger = logging.getLogger(__name__)


def run(params: Path, out: Path) -> None:
    """Load params; read, sample and write the four outputs."""
    cfg, seed = load_stage(PromptsConfig, params, "prompts")
    write_prompts(cfg, seed, out)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `prompts` stage."""
    return stage_main(run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
