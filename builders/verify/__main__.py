"""Stage `verify`: every teacher answer checked against FLAN's reference.

`python -m builders.verify --params params.yaml --traces data/traces/traces.parquet
--out data/verify --cache data/verify_cache`

Each trace gets its answer kind (multiple_choice, closed, open), a verdict (correct, wrong,
unverifiable) and the final answer extracted from its explanation (`answers.check`); with
`verify.judge`, a judge model answers correct/incorrect for open answers, its replies cached in
`--cache` like generations. By `verify.drop_wrong` / `drop_unverifiable` a row stays (flagged by
its verdict) or goes to `removed.parquet` (`wrong_answer`, `unverifiable_answer`). `stats.json`
has the funnel and the verdict counts per teacher, submix and answer kind; `run.json` what the
run did. Library: `builders.verify`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from builders.verify.config import VerifyConfig
from builders.verify.run import run_verify
from core.config import load_section
from core.stage import stage_main

logger = logging.getLogger(__name__)


def run(params: Path, traces: Path, out: Path, cache: Path) -> None:
    """Load params; check, judge, filter and write the verified trace table."""
    cfg = load_section(VerifyConfig, params, "verify")  # no seed: nothing here is random
    logger.info("verify params: %s", cfg.model_dump(mode="json"))
    stats = run_verify(traces, cfg, out, cache)
    logger.info("verify funnel: %s", stats["funnel"])


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `verify` stage."""
    return stage_main(run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
