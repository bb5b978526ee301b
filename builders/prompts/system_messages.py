"""System messages: the YAML file of messages and their per-submix assignment by weight."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.config import ParamsError, unique_by
from core.hashing import unit_uniforms
from core.io import read_document


class SystemMessage(BaseModel):
    """One system message: an integer id, its text, and whether it suits only multiple-choice."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: int = Field(ge=1)
    text: str
    mc_only: bool = False


class SystemMessageFile(BaseModel):
    """The file's shape: `messages: [{id, text, mc_only?}, ...]` with unique ids."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    messages: list[SystemMessage] = Field(min_length=1)

    @field_validator("messages")
    @classmethod
    def _unique_ids(cls, v: list[SystemMessage]) -> list[SystemMessage]:
        return unique_by(v, lambda m: m.id, "duplicate message ids")


def load_system_messages(path: str | Path) -> dict[int, SystemMessage]:
    """Load and validate a system-message file; errors name the file."""
    path = Path(path)
    data = read_document(path, what="system message file", error=ParamsError)
    try:
        parsed = SystemMessageFile.model_validate(data)
    except ValidationError as exc:
        raise ParamsError(f"{path}: invalid system message file: {exc.errors()[0]['msg']}") from None
    return {m.id: m for m in parsed.messages}


def check_weights(
    weights: dict[str, dict[int, float]], messages: dict[int, SystemMessage], source: str
) -> None:
    """Weighted ids must exist; each submix needs weight on a message any question may get."""
    for submix, w in weights.items():
        unknown = sorted(set(w) - set(messages))
        if unknown:
            raise ParamsError(
                f"{source}: prompts.system_message_weights.{submix}: unknown message ids {unknown}"
            )
        if not any(v > 0 and not messages[i].mc_only for i, v in w.items()):
            raise ParamsError(
                f"{source}: prompts.system_message_weights.{submix}: needs a positive weight on at least "
                "one message that is not multiple-choice-only"
            )


def assign_system_messages(
    df: pl.DataFrame,
    weights: dict[str, dict[int, float]],
    messages: dict[int, SystemMessage],
    seed: int | str,
) -> pl.DataFrame:
    """Draw a system message per row from its submix's weights, by a seeded hash of the row's id.

    A row's message depends on its id alone, never on which other rows were sampled, so a larger
    budget leaves every earlier prompt (and its cached generation) as it was. Messages marked
    `mc_only` are drawn only for rows with `has_options`; for other rows the remaining weights are
    renormalised.
    """
    ids = np.zeros(df.height, dtype=np.int32)
    submix = df["submix"].to_numpy()
    has_opt = df["has_options"].to_numpy()
    uniforms = unit_uniforms(seed, df["id"])
    for name in sorted(set(submix.tolist())):
        w = weights.get(name)
        if not w:
            raise ParamsError(f"prompts.system_message_weights has no entry for submix '{name}'")
        for opt in (False, True):
            rows = np.flatnonzero((submix == name) & (has_opt == opt))
            if rows.size == 0:
                continue
            keys = sorted(i for i, v in w.items() if v > 0 and (opt or not messages[i].mc_only))
            cdf = np.cumsum(np.array([w[i] for i in keys], dtype=np.float64))
            pick = np.searchsorted(cdf / cdf[-1], uniforms[rows], side="right")
            ids[rows] = np.array(keys, dtype=np.int32)[np.minimum(pick, len(keys) - 1)]
    texts = {i: m.text for i, m in messages.items()}
    return df.with_columns(
        pl.Series("system_prompt_id", ids, dtype=pl.Int32),
        pl.Series("system_prompt", [texts[int(i)] for i in ids], dtype=pl.String),
    )
