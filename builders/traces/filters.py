"""Response filters: why a generation does not become a trace row."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    from builders.traces.config import TracesConfig

TRUNCATED, EMPTY, REFUSAL, TOO_SHORT = "truncated", "empty_response", "refusal", "too_short"

# what Python's str.strip() strips (str.isspace), which differs from Unicode White_Space in a few
WHITESPACE = "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace())


def regex_literal(text: str) -> str:
    """`text` as a pattern of polars' (Rust) regex syntax that matches it literally."""
    return "".join("\\" + c if c in "\\.+*?()|[]{}^$#&-~" else c for c in text)


def response_problems(frame: pl.DataFrame, cfg: TracesConfig) -> pl.DataFrame:
    """Columns `reason` and `detail` for each row of `frame` (response, finish_reason): both null
    when the response is kept. The first matching filter wins, in the order truncated, empty,
    refusal (the first of `cfg.refusal_phrases` found, ignoring case), too short."""
    text = pl.col("response").str.strip_chars(WHITESPACE)
    chars = text.str.len_chars()
    truncated = (pl.col("finish_reason") == "length") & pl.lit(cfg.remove_truncated)
    refusal: pl.Expr = pl.lit(None, dtype=pl.String)
    for phrase in reversed(cfg.refusal_phrases):
        found = pl.col("response").str.contains("(?i)" + regex_literal(phrase))
        refusal = pl.when(found).then(pl.lit(phrase)).otherwise(refusal)
    too_short = pl.format("{} < {} chars", chars, pl.lit(cfg.min_response_chars))
    cases = [
        (truncated, pl.lit(TRUNCATED), pl.lit("finish_reason=length")),
        (chars == 0, pl.lit(EMPTY), pl.format("finish_reason={}", pl.col("finish_reason"))),
        (refusal.is_not_null(), pl.lit(REFUSAL), refusal),
        (chars < cfg.min_response_chars, pl.lit(TOO_SHORT), too_short),
    ]
    reason: pl.Expr = pl.lit(None, dtype=pl.String)
    detail: pl.Expr = pl.lit(None, dtype=pl.String)
    for cond, r, d in reversed(cases):
        reason = pl.when(cond).then(r).otherwise(reason)
        detail = pl.when(cond).then(d).otherwise(detail)
    return frame.select(reason.alias("reason"), detail.alias("detail"))
