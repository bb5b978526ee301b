"""DVC stage `train`: progressive supervised fine-tuning of the student on the release.

    python -m train.train --params params.yaml --out models/student-sft \
        --metrics data/train/metrics.json --plots data/train/loss.csv

Outputs: the model folder, `metrics.json` (phases in order, loss, tokens), a per-step loss CSV that
dvc.yaml declares as a plot, and `run.json` beside the metrics (wall time and tokens/s of this run,
not a stage out: dvc.yaml lists it as a top-level metric) (library: `train.sft`).

Real hardware: set `train.bf16` and `train.gradient_checkpointing`, and start it with
`accelerate launch --config_file train/accelerate_fsdp.yaml -m train.train ...` for multi-GPU FSDP.
"""

from __future__ import annotations

import logging
from pathlib import Path

from accelerate import PartialState

from core.config import load_stage
from core.io import write_json
from core.models import check_model
from core.stage import stage_main
from train.config import TrainConfig
from train.sft import train_progressive, write_loss_csv

logger = logging.getLogger(__name__)


def run(params: Path, out: Path, metrics: Path, plots: Path) -> None:
    """Train every phase; the main process writes the metrics and the loss curve."""
    cfg, seed = load_stage(TrainConfig, params, "train")
    check_model(cfg.base_model, "train.base_model")
    figures, rows, timings = train_progressive(cfg, seed, out)
    if not PartialState().is_main_process:
        return
    write_loss_csv(rows, plots)
    write_json(figures, metrics)
    write_json(timings, metrics.parent / "run.json")
    logger.info("phases %s, final loss %.4f", figures["phase_order"], figures["final_loss"])


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `train` stage."""
    return stage_main(run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
