"""DVC stage `release`: a folder laid out like a Hub dataset repository, with its card.

    python -m cards.release --params params.yaml --traces data/traces/traces.parquet ... --out release

Writes `data/<config>/train-0000k-of-0000n.parquet` for config `default` (all teachers) and one
config per teacher, `data/heldout/test-...parquet`, `README.md` (the card) and `funnel.png`
(library: `cards.assemble`).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cards.assemble import ReleaseConfig, build_release
from cards.hub import PublishConfig
from cards.inputs import load_inputs
from core.config import load_section
from core.stage import run_stage

logger = logging.getLogger(__name__)


def run(args: argparse.Namespace) -> None:
    """Load params and every upstream output; write the release folder."""
    cfg = load_section(ReleaseConfig, args.params, "release")
    pub = load_section(PublishConfig, args.params, "publish")
    logger.info("release params: %s", cfg.model_dump())
    inputs = load_inputs(
        traces=args.traces,
        traces_meta=args.traces_meta,
        heldout=args.heldout,
        stats={
            "prompts": args.prompts_stats,
            "license": args.license_stats,
            "dedup": args.dedup_stats,
            "traces": args.traces_stats,
        },
        license_summary=args.license_summary,
        dvc_lock=args.dvc_lock,
        params=args.params,
    )
    build_release(inputs, cfg, pub, args.out)
    logger.info("release written to %s", args.out)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `release` stage."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--traces", type=Path, required=True, help="data/traces/traces.parquet")
    parser.add_argument("--traces-stats", type=Path, required=True)
    parser.add_argument("--traces-meta", type=Path, required=True, help="folder of <teacher>.json")
    parser.add_argument("--prompts-stats", type=Path, required=True)
    parser.add_argument("--heldout", type=Path, required=True)
    parser.add_argument("--license-stats", type=Path, required=True)
    parser.add_argument("--license-summary", type=Path, required=True)
    parser.add_argument("--dedup-stats", type=Path, required=True)
    parser.add_argument("--dvc-lock", type=Path, default=Path("dvc.lock"))
    parser.add_argument("--out", type=Path, default=Path("release"))
    args = parser.parse_args(argv)
    return run_stage("release", lambda: run(args))


if __name__ == "__main__":
    raise SystemExit(main())
