"""The one error hierarchy: every failure a stage reports as one line derives from `PipelineError`.

A `PipelineError` means the run cannot go on (bad params, a broken input, a refused upload); its
message names the file, row, key or server. Anything else escaping a stage is a bug and keeps
its traceback.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base of every error a stage stops on with one clear line."""


class ParamsError(PipelineError, ValueError):
    """A params file or section is missing, malformed or invalid."""


class InputError(PipelineError, ValueError):
    """An input file or table is missing or breaks its contract."""
