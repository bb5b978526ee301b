"""The one error hierarchy: every failure a stage reports as one line derives from `PipelineError`.

A `PipelineError` means the run cannot go on (bad params, a broken input, a refused upload); its
message names the file, row, key or server. Anything else escaping a stage is a bug and keeps
its traceback.
"""

from __future__ import annotations

from typing import Any


class PipelineError(Exception):
    """Base of every error a stage stops on with one clear line."""


class ParamsError(PipelineError, ValueError):
    """A params file or section is missing, malformed or invalid."""


class InputError(PipelineError, ValueError):
    """An input file or table is missing or breaks its contract."""


def validation_message(errors: list[dict[str, Any]], prefix: str = "") -> str:
    """pydantic's errors as `key.path: message; ...`, keys prefixed with `prefix` (a section)."""
    parts = []
    for err in errors:
        loc = ".".join(str(p) for p in (*([prefix] if prefix else []), *err["loc"]))
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)
