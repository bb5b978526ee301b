"""DVC stage `train`: progressive supervised fine-tuning of the student on the release.

    python -m train.train --params params.yaml --out models/student-sft \
        --metrics data/train/metrics.json --plots data/train/loss.csv

Outputs: the model folder, `metrics.json` (phases in order, loss, tokens, tokens/s) and a per-step
loss CSV that dvc.yaml declares as a plot (library: `train.sft`).

Real hardware: set `train.bf16` and `train.gradient_checkpointing`, and start it with
`accelerate launch --config_file train/accelerate_fsdp.yaml -m train.train ...` for multi-GPU FSDP.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from accelerate import PartialState

from core.config import load_base, load_section
from core.io import write_json
from core.stage import run_stage
from train.config import TrainConfig
from train.sft import train_progressive, write_loss_csv

logger = logging.getLogger(__name__)


def run(params: str, out: Path, metrics_path: Path, plots: Path) -> None:
    """Train every phase; the main process writes the metrics and the loss curve."""
    cfg = load_section(TrainConfig, params, "train")
    seed = load_base(params).seed
    logger.info("train params: %s (seed %d)", cfg.model_dump(), seed)
    metrics, rows = train_progressive(cfg, seed, out)
    if not PartialState().is_main_process:
        return
    write_loss_csv(rows, plots)
    write_json(metrics, metrics_path)
    logger.info("phases %s, final loss %.4f", metrics["phase_order"], metrics["final_loss"])


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `train` stage."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", required=True, type=Path, help="model folder to write")
    parser.add_argument("--metrics", required=True, type=Path, help="metrics.json to write")
    parser.add_argument("--plots", required=True, type=Path, help="per-step loss CSV to write")
    args = parser.parse_args(argv)
    return run_stage("train", lambda: run(args.params, args.out, args.metrics, args.plots))


if __name__ == "__main__":
    raise SystemExit(main())
