"""Check the stage runner's failure contract: exit code 2 and one line `<stage>: <message>`."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from core.stage import EXIT_FAILED


def stage_fails(
    main: Callable[[list[str]], int], argv: list[str], capsys: pytest.CaptureFixture[str], pattern: str
) -> str:
    """Run a stage's `main`; assert it failed with one stderr line matching `pattern`; return it."""
    capsys.readouterr()
    assert main(argv) == EXIT_FAILED
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]
