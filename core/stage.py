"""The stage runner: the same logging, exit codes and one-line errors for every DVC stage.

Exit codes: 0 done; 2 a `PipelineError` (the one line `<stage>: <message>` on stderr, no
traceback, no partial output since every write is atomic); anything else is a bug and propagates
with its traceback (Python's exit code 1).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.errors import PipelineError

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 2


def setup_logging(level: int = logging.INFO) -> None:
    """Configure root logging for a stage entry point."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def stage_main(
    stage: str, doc: str, argv: list[str] | None, run: Callable[..., Any], **paths: str | tuple[str, str]
) -> int:
    """A stage's command line: `--params` plus one path option per entry of `paths` (a help text:
    required; a `(default, help)` pair: optional); then `run(params=..., <name>=...)` under
    `run_stage`. Option `--a-b` is argument `a_b`."""
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file")
    for name, spec in paths.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(spec, tuple):
            parser.add_argument(flag, type=Path, default=Path(spec[0]), help=spec[1])
        else:
            parser.add_argument(flag, type=Path, required=True, help=spec)
    args = vars(parser.parse_args(argv))
    return run_stage(stage, lambda: run(**args))


def run_stage(stage: str, body: Callable[[], Any]) -> int:
    """Run `body` as stage `stage`; return the process exit code."""
    setup_logging()
    try:
        body()
    except PipelineError as exc:
        print(f"{stage}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    logger.info("%s: done", stage)
    return EXIT_OK
