"""Guard `dvc.lock` against DVC's in-place rewrite: a kill at the wrong moment leaves it empty.

    python -m core.lockfile            # check; keep a copy of a good lock (exit 2 when broken)
    python -m core.lockfile --restore  # a broken lock is replaced by the last good copy

DVC rewrites `dvc.lock` in place after each stage, so a `kill -9` at that moment can leave it empty
or cut short, and every later `dvc repro` stops with a validation error. `make repro` runs this
before and after `dvc repro`: after, it copies a good lock to `.dvc/tmp/dvc.lock.good`; before, it
restores that copy over a broken lock. Restoring is safe: a lock older than the outputs only makes
DVC re-run (or restore from its cache) the stages whose entries changed since.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path
from typing import Any

import yaml

from core.errors import InputError
from core.stage import run_stage

logger = logging.getLogger(__name__)

GOOD_COPY = Path(".dvc/tmp/dvc.lock.good")


def lock_problem(path: Path) -> str | None:
    """Why the lock file at `path` cannot be read by DVC, or None (a missing lock is fine)."""
    if not path.exists():
        return None
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        return "is empty"
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return f"is not valid YAML ({str(exc).splitlines()[0]})"
    if not isinstance(data, dict) or not isinstance(data.get("stages"), dict):
        return "has no 'stages' mapping"
    return None


def guard(lock: Path, good: Path, restore: bool) -> str:
    """Check `lock`; keep a copy of it at `good` when sound, or restore `good` over it when asked."""
    problem = lock_problem(lock)
    if problem is None:
        if lock.exists():
            good.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(lock, good)
        return f"{lock} is sound"
    if restore and good.exists() and lock_problem(good) is None:
        shutil.copyfile(good, lock)
        logger.warning(
            "%s %s (a kill while DVC rewrote it); restored the last good copy %s", lock, problem, good
        )
        return f"{lock} restored from {good}"
    hint = (
        f"`python -m core.lockfile --restore` restores {good}"
        if good.exists()
        else (
            f"no good copy at {good}: delete {lock} and run `dvc repro` (finished stages come back from "
            "DVC's cache)"
        )
    )
    raise InputError(f"{lock} {problem} (a kill while DVC rewrote it?); {hint}")


def main(argv: list[str] | None = None) -> int:
    """Command line: check (and keep a good copy of) `dvc.lock`, or restore it."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lock", type=Path, default=Path("dvc.lock"))
    parser.add_argument("--good", type=Path, default=GOOD_COPY)
    parser.add_argument("--restore", action="store_true", help="replace a broken lock by the good copy")
    args = parser.parse_args(argv)
    return run_stage("lockfile", lambda: logger.info(guard(args.lock, args.good, args.restore)))


if __name__ == "__main__":
    raise SystemExit(main())
