"""Control characters in FLAN text: a prompt holding NUL (or another C0/C1 control but tab, newline
and carriage return) is a removed row (`control_characters`), never sent to a teacher."""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

CONTROL_CHARS = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
REASON = "control_characters"


def control_char_fault(columns: Iterable[str]) -> pl.Expr:
    """`control_characters:<column>` for the first of `columns` holding a control character, else null."""
    fault = pl.lit(None, dtype=pl.String)
    for column in reversed(list(columns)):
        fault = (
            pl.when(pl.col(column).str.contains(CONTROL_CHARS))
            .then(pl.lit(f"{REASON}:{column}"))
            .otherwise(fault)
        )
    return fault
