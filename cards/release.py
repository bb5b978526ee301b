"""DVC stage `release`: a folder laid out like a Hub dataset repository, with its card.

    python -m cards.release --params params.yaml --traces data/verify/traces.parquet ... --out release

Writes `data/<config>/train-0000k-of-0000n.parquet` for config `default` (all teachers) and one
config per teacher, `data/heldout/test-...parquet`, `README.md` (the card) and `funnel.png`
(library: `cards.assemble`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from cards.assemble import ReleaseConfig, build_release
from cards.hub import PublishConfig
from cards.inputs import load_inputs
from core.config import load_section
from core.stage import stage_main

logger = logging.getLogger(__name__)


def run(
    params: Path,
    traces: Path,
    traces_stats: Path,
    traces_meta: Path,
    prompts_stats: Path,
    heldout: Path,
    license_stats: Path,
    license_summary: Path,
    dedup_stats: Path,
    verify_stats: Path,
    out: Path = Path("release"),
) -> None:
    """Load params and every upstream output; write the release folder (`traces` is the verified
    trace table, `data/verify/traces.parquet`)."""
    cfg = load_section(ReleaseConfig, params, "release")
    pub = load_section(PublishConfig, params, "publish")
    logger.info("release params: %s", cfg.model_dump())
    stats = {
        "prompts": prompts_stats,
        "license": license_stats,
        "dedup": dedup_stats,
        "traces": traces_stats,
        "verify": verify_stats,
    }
    loaded = load_inputs(traces, traces_meta, heldout, stats, license_summary, params)
    build_release(loaded, cfg, pub, out)
    logger.info("release written to %s", out)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `release` stage."""
    return stage_main(run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
