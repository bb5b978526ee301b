"""The stage runner: the same logging, exit codes and one-line errors for every DVC stage.

Exit codes: 0 done; 2 a `PipelineError` (the one line `<stage>: <message>` on stderr, no
traceback, no partial output since every write is atomic); anything else is a bug and propagates
with its traceback (Python's exit code 1).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from core.errors import PipelineError

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 2


def setup_logging(level: int = logging.INFO) -> None:
    """Configure root logging for a stage entry point."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


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
