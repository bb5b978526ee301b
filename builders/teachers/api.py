"""What the API backends (`openai`, `openai_batch`) share: a price, a budget, a key, safe URLs."""

from __future__ import annotations

import os
import urllib.request
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, model_validator

from builders.teachers.base import TeacherBase
from core.config import StageConfig
from core.errors import PipelineError


class PriceConfig(StageConfig):
    """What a provider bills, in currency units (e.g. USD) per million tokens."""

    input: float = Field(ge=0.0, description="per million input (prompt) tokens")
    output: float = Field(ge=0.0, description="per million output (completion) tokens")
    batch_input: float | None = Field(None, ge=0.0, description="Batch API price; null: half of input")
    batch_output: float | None = Field(None, ge=0.0, description="Batch API price; null: half of output")

    def resolved(self) -> dict[str, float]:
        """Every price per million tokens, the batch ones filled in (half of online when null)."""
        return {
            "input": self.input,
            "output": self.output,
            "batch_input": self.input / 2 if self.batch_input is None else self.batch_input,
            "batch_output": self.output / 2 if self.batch_output is None else self.batch_output,
        }

    def per_token(self, at: str) -> tuple[float, float]:
        """(input, output) price of one token, `at` "online" or "batch"."""
        p = self.resolved()
        prefix = "batch_" if at == "batch" else ""
        return p[f"{prefix}input"] / 1e6, p[f"{prefix}output"] / 1e6


class ApiTeacher(TeacherBase):
    """A teacher behind a paid or self-hosted API: price, budget, key and the served model's name."""

    served_model_name: str | None = Field(None, description="the model name the API takes; null: model")
    api_key_env: str | None = Field(None, description="environment variable holding the API key")
    tokenizer: str | None = Field(
        None, description="a tokenizer (folder or Hub id) that counts like the served model; null: model"
    )
    price: PriceConfig | None = Field(None, description="what the provider bills; null: not priced")
    max_cost: float | None = Field(
        None, gt=0.0, description="the most the teacher's cached answers may cost, by their usage"
    )

    @model_validator(mode="after")
    def _budget_needs_price(self) -> ApiTeacher:
        if self.max_cost is not None and self.price is None:
            raise ValueError("max_cost needs a price")
        return self

    @property
    def tokenizer_source(self) -> str:
        return self.tokenizer or self.model

    @property
    def api_model(self) -> str:
        """The model name sent to the API."""
        return self.served_model_name or self.model


def api_key(cfg: ApiTeacher, urls: list[str]) -> str | None:
    """The API key from the environment variable `cfg.api_key_env` (None when there is none)."""
    if not cfg.api_key_env:
        return None
    key = os.environ.get(cfg.api_key_env)
    if not key:
        raise PipelineError(f"teacher {cfg.name}: environment variable {cfg.api_key_env} is not set")
    if any("@" in urlsplit(u).netloc for u in urls):
        raise PipelineError(f"teacher {cfg.name}: credentials in a base URL and api_key_env; use one")
    return key


def safe_url(url: str) -> str:
    """`url` without user info (credentials never reach a message or a log)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for `url` (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY)."""
    parts = urlsplit(url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(parts.scheme) or proxies.get("all")
