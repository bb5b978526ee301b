"""Typed stage configs loaded from `params.yaml`.

Each stage owns one section of `params.yaml` (plus the shared `base:` section). A section loads
into a frozen pydantic model that rejects unknown keys and checks its values before any work
starts; errors name the file and the dotted key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import ParamsError, validation_message
from core.io import read_document

logger = logging.getLogger(__name__)

T = TypeVar("T", bound="StageConfig")

__all__ = [
    "BaseConfig",
    "ParamsError",
    "StageConfig",
    "load_base",
    "load_params",
    "load_section",
    "parse_section",
    "repeated",
]


class StageConfig(BaseModel):
    """Base for every stage's config: frozen, unknown keys and non-finite numbers (`.inf`, `.nan`)
    rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class BaseConfig(StageConfig):
    """The shared `base:` section."""

    seed: int = Field(42, ge=0, description="seed every stage derives its randomness from")


def repeated(values: list[Any]) -> list[Any]:
    """The values that occur more than once, sorted (for "names must be unique" checks)."""
    seen: set[Any] = set()
    return sorted({v for v in values if v in seen or seen.add(v)})


def unique_by(items: list[Any], key: Callable[[Any], Any], what: str) -> list[Any]:
    """`items` unchanged; ValueError naming `what` and the repeated keys when a key repeats."""
    dupes = repeated([key(i) for i in items])
    if dupes:
        raise ValueError(f"{what}: {dupes}")
    return items


def load_params(path: str | Path) -> dict[str, Any]:
    """Read a params YAML file into a dict, with a clear error naming the file."""
    data = read_document(path, what="params file", error=ParamsError)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def parse_section(model: type[T], data: Any, *, section: str, source: str = "params") -> T:
    """Validate one section's mapping into `model`, naming `source` and the dotted key on error."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ParamsError(f"{source}: section '{section}' must be a mapping, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ParamsError(f"{source}: {validation_message(exc.errors(), section)}") from None


def load_section(
    model: type[T], params_path: str | Path, section: str, params: dict[str, Any] | None = None
) -> T:
    """Load `section` of the params file at `params_path` (or of `params`, its document already
    read) into `model`."""
    params = load_params(params_path) if params is None else params
    if section not in params:
        raise ParamsError(f"{params_path}: missing section '{section}'")
    return parse_section(model, params[section], section=section, source=str(params_path))


def load_base(params_path: str | Path, params: dict[str, Any] | None = None) -> BaseConfig:
    """Load the shared `base:` section (defaults when absent)."""
    params = load_params(params_path) if params is None else params
    return parse_section(BaseConfig, params.get("base"), section="base", source=str(params_path))


def load_stage(
    model: type[T], params_path: str | Path, section: str, params: dict[str, Any] | None = None
) -> tuple[T, int]:
    """(`section` loaded into `model`, `base.seed`) from one read of the params file (or from
    `params`, its document already read), logged as the stage starts."""
    params = load_params(params_path) if params is None else params
    cfg = load_section(model, params_path, section, params)
    seed = load_base(params_path, params).seed
    logger.info("%s params: %s (base.seed=%d)", section, cfg.model_dump(mode="json"), seed)
    return cfg, seed
