"""Stage `tiny_models`: the offline demo's tiny teachers and student, built from the FLAN sample.

`python -m builders.tiny_models --params params.yaml --sample sample/flan --out models` trains one
byte-level BPE tokenizer on the sample's `inputs`/`targets` texts and writes one tiny Llama with
random weights per entry of `tiny_models.models` to `<out>/<name>` (library: `builders.tiny_llama`).
Their outputs are noise; they exist so the pipeline runs end to end with real vLLM on a CPU.
"""

from __future__ import annotations

import argparse
import logging

from builders.tiny_llama import TinyModelsConfig, build_all
from core.config import load_base, load_section
from core.stage import run_stage

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `tiny_models` stage."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--sample", required=True, help="folder of FLAN Parquet files")
    parser.add_argument("--out", required=True, help="folder that receives one subfolder per model")
    args = parser.parse_args(argv)

    def body() -> None:
        cfg = load_section(TinyModelsConfig, args.params, "tiny_models")
        base = load_base(args.params)
        logger.info("tiny_models params: %s (base.seed=%d)", cfg.model_dump(), base.seed)
        build_all(cfg, base.seed, args.sample, args.out)

    return run_stage("tiny_models", body)


if __name__ == "__main__":
    raise SystemExit(main())
