"""DVC stage `eval`: the base and fine-tuned students on the held-out FLAN tasks, generated with vLLM.

The held-out split is read with `datasets.load_dataset(<release>, "heldout", split="test")`. Each
model answers every prompt with the same chat formatting training used (system omitted when
empty), greedy by default; replies are scored against the FLAN references (`answers.score`) per
submix and overall. Outputs: `metrics.json`, a Markdown table (the card and README show it) and
the per-row predictions (library: `train.evaluation`).

    python -m train.eval --params params.yaml --out data/eval

"""

from __future__ import annotations

import logging
from pathlib import Path

from core.config import load_stage
from core.io import write_json, write_parquet, write_text
from core.models import check_model
from core.stage import stage_main
from train.config import EvalConfig
from train.evaluation import PREDICTIONS_SCHEMA, run_eval

logger = logging.getLogger(__name__)


def run(params: Path, out: Path) -> None:
    """Generate and score every model of `eval.models`; write predictions, table and metrics."""
    cfg, seed = load_stage(EvalConfig, params, "eval")
    for label, model in cfg.models.items():  # before any work: every model exists
        check_model(model, f"eval.models.{label}")
    metrics, table, preds = run_eval(cfg, seed)
    write_parquet(preds, out / "predictions.parquet", PREDICTIONS_SCHEMA)
    write_text(table, out / "table.md")
    write_json(metrics, out / "metrics.json")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `eval` stage."""
    return stage_main(run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
