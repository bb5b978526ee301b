"""Stage `tiny_models`: the offline demo's tiny teachers and student, built from the FLAN sample.

`python -m builders.tiny_models --params params.yaml --sample sample/flan --out models` trains one
byte-level BPE tokenizer on the sample's `inputs`/`targets` texts and writes one tiny Llama with
random weights per entry of `tiny_models.models` to `<out>/<name>` (library: `builders.tiny_llama`).
Their outputs are noise; they exist so the pipeline runs end to end with real vLLM on a CPU.
"""

from __future__ import annotations

import logging
from pathlib import Path

from builders.tiny_llama import TinyModelsConfig, build_all
from core.config import load_stage
from core.stage import stage_main

logger = logging.getLogger(__name__)


def run(params: Path, sample: Path, out: Path) -> None:
    """Build every model of `tiny_models.models` under `out`."""
    cfg, seed = load_stage(TinyModelsConfig, params, "tiny_models")
    build_all(cfg, seed, sample, out)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `tiny_models` stage."""
    return stage_main(run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
