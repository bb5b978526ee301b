"""The stage runner: the same logging, exit codes and one-line errors for every DVC stage.

Exit codes: 0 done; 2 a `PipelineError` (the one line `<stage>: <message>` on stderr, no
traceback, no partial output since every write is atomic); anything else is a bug and propagates
with its traceback (Python's exit code 1).

Every stage gets two guards: its inputs are fixed for the whole run (`core.inputs`: params read
once; an output is renamed into place, and the stage ends well, only while what it read is
unchanged), and under DVC it stops when the `dvc` that ran it is gone (`core.parent`).
"""

from __future__ import annotations

import argparse
import inspect
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core import inputs, parent
from core.errors import PipelineError

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 2


def setup_logging(level: int = logging.INFO) -> None:
    """Configure root logging for a stage entry point."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def stage_main(run: Callable[..., Any], argv: list[str] | None = None) -> int:
    """The command line of the stage whose `run` this is, then `run(**args)` under `run_stage`.

    The stage is the last part of `run`'s module name; `--help` prints that module's docstring.
    `run(params, ...)`: `--params` (default params.yaml) plus one path option per further
    parameter, required unless it has a default; option `--a-b` is parameter `a_b`.
    """
    module = run.__module__
    spec = getattr(sys.modules[module], "__spec__", None)
    name = (spec.name if spec is not None else module).removesuffix(".__main__")  # `-m` runs as __main__
    stage = name.rsplit(".", 1)[-1]  # a stage package's entry is its `__main__`
    parser = argparse.ArgumentParser(
        prog=f"python -m {name}",
        description=sys.modules[module].__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for name, param in inspect.signature(run).parameters.items():
        flag = "--" + name.replace("_", "-")
        if name == "params":
            parser.add_argument(flag, type=Path, default=Path("params.yaml"))
        elif param.default is inspect.Parameter.empty:
            parser.add_argument(flag, type=Path, required=True)
        else:
            parser.add_argument(flag, type=Path, default=Path(param.default))
    args = vars(parser.parse_args(argv))
    return run_stage(stage, lambda: run(**args))


def run_stage(stage: str, body: Callable[[], Any]) -> int:
    """Run `body` as stage `stage`; return the process exit code."""
    setup_logging()
    with inputs.pinned(stage) as pinned, parent.watching() as watch:
        try:
            try:
                body()
            except KeyboardInterrupt:
                if watch is None or not watch.gone.is_set():
                    raise
                raise watch.error("stopped") from None
            parent.raise_if_orphaned("its outputs are written but DVC records nothing")
            pinned.check()
        except PipelineError as exc:
            print(f"{stage}: {exc}", file=sys.stderr)
            return EXIT_FAILED
    logger.info("%s: done", stage)
    return EXIT_OK
