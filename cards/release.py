"""DVC stage `release`: a folder laid out like a Hub dataset repository, with its card.

    python -m cards.release --params params.yaml --traces data/verify/traces.parquet ... --out release

The funnel's stages and their `stats.json` are dvc.yaml's filtering stages (`core.stages`).

Writes `data/<config>/train-0000k-of-0000n.parquet` for config `default` (all teachers) and one
config per teacher, `data/heldout/test-...parquet`, `README.md` (the card) and `funnel.png`
(library: `cards.assemble`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from cards.assemble import build_release
from cards.config import ReleaseConfig
from cards.hub import PublishConfig
from cards.inputs import load_inputs
from core.config import load_section
from core.stage import stage_main

logger = logging.getLogger(__name__)


def run(
    params: Path,
    traces: Path,
    traces_meta: Path,
    heldout: Path,
    license_summary: Path,
    out: Path = Path("release"),
    pipeline: Path = Path("dvc.yaml"),
) -> None:
    """Load params and every upstream output; write the release folder (`traces` is the verified
    trace table, `data/verify/traces.parquet`). The funnel is read from the `stats.json` of every
    filtering stage of `pipeline` (`core.stages`), paths relative to its folder."""
    cfg = load_section(ReleaseConfig, params, "release")
    pub = load_section(PublishConfig, params, "publish")
    logger.info("release params: %s", cfg.model_dump())
    loaded = load_inputs(traces, traces_meta, heldout, license_summary, params, pipeline)
    build_release(loaded, cfg, pub, out)
    logger.info("release written to %s", out)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `release` stage."""
    return stage_main(run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
