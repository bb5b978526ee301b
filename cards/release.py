"""DVC stage `release`: a folder laid out like a Hub dataset repository, with its card.

    python -m cards.release --params params.yaml --traces data/traces/traces.parquet ... --out release

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


def run(params: Path, out: Path, dvc_lock: Path, **inputs: Path) -> None:
    """Load params and every upstream output; write the release folder."""
    cfg = load_section(ReleaseConfig, params, "release")
    pub = load_section(PublishConfig, params, "publish")
    logger.info("release params: %s", cfg.model_dump())
    loaded = load_inputs(
        traces=inputs["traces"],
        traces_meta=inputs["traces_meta"],
        heldout=inputs["heldout"],
        stats={stage: inputs[f"{stage}_stats"] for stage in ("prompts", "license", "dedup", "traces")},
        license_summary=inputs["license_summary"],
        dvc_lock=dvc_lock,
        params=params,
    )
    build_release(loaded, cfg, pub, out)
    logger.info("release written to %s", out)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `release` stage."""
    return stage_main(
        "release",
        __doc__,
        argv,
        run,
        traces="data/traces/traces.parquet",
        traces_stats="data/traces/stats.json",
        traces_meta="folder of <teacher>.json",
        prompts_stats="data/prompts/stats.json",
        heldout="data/prompts/heldout.parquet",
        license_stats="data/license/stats.json",
        license_summary="data/license/license_summary.json",
        dedup_stats="data/dedup/stats.json",
        dvc_lock=("dvc.lock", "the lock file whose data-stage entries the card digests"),
        out=("release", "release folder to write"),
    )


if __name__ == "__main__":
    raise SystemExit(main())
