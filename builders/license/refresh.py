"""Rebuild the committed license registry from the Data Provenance Initiative's audit.

    python -m builders.license.refresh --audit ../shared/data/provenance [--out PATH] [--check]

The output is byte-for-byte stable (sorted keys, fixed formatting), so a rebuild from the same
audit leaves the committed file unchanged; `--check` exits 1 when the committed file differs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from builders.license.audit import AuditError, build_registry, registry_text
from builders.license.registry import REGISTRY_PATH
from core.io import write_text
from core.stage import setup_logging

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    """Entry point: build the registry from `--audit` and write it to `--out`."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--audit", required=True, type=Path, help="folder with the audit's JSON files")
    parser.add_argument("--out", type=Path, default=REGISTRY_PATH, help="registry file to write")
    parser.add_argument("--check", action="store_true", help="only compare with --out; exit 1 if it differs")
    args = parser.parse_args(argv)
    setup_logging()
    logger.info("audit=%s out=%s check=%s", args.audit, args.out, args.check)
    try:
        text = registry_text(build_registry(args.audit))
    except AuditError as exc:
        logger.error("%s", exc)
        return 2
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else None
        if current != text:
            logger.error("%s is out of date with %s", args.out, args.audit)
            return 1
        logger.info("%s is up to date", args.out)
        return 0
    write_text(text, args.out)
    logger.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
