"""What the API backends (`openai`, `openai_batch`) share: a price, a budget, a key, safe URLs, and
which model names an answer may come back under."""

from __future__ import annotations

import os
import re
import urllib.request
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, model_validator

from builders.generation.base import TeacherBase
from builders.generation.provenance import COMMIT_RE
from core.config import StageConfig
from core.errors import PipelineError

# A provider's dated snapshot after the model's name: -2024-07-18 (OpenAI), -20241022 (Anthropic),
# -0613 (OpenAI's older MMDD).
_MONTH, _DAY = r"(?:0[1-9]|1[0-2])", r"(?:0[1-9]|[12][0-9]|3[01])"
SNAPSHOT_SUFFIX = re.compile(rf"-(?:20[0-9]{{2}}-{_MONTH}-{_DAY}|20[0-9]{{2}}{_MONTH}{_DAY}|{_MONTH}{_DAY})")


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
    allow_model_alias: bool = Field(
        False, description="accept answers the server names another model (meta records served_models)"
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

    def serves(self, served: str) -> bool:
        """Whether an answer the server names `served` came from this teacher's model: its name as
        configured (`model` or `served_model_name`), its `revision` (a provider's snapshot name),
        or, when `revision` pins no snapshot (none, or a commit hash), the name followed by a dated
        snapshot (`gpt-4o-mini-2024-07-18`, `-20241022`, `-0613`); any name with `allow_model_alias`."""
        names = (self.model, self.api_model)
        if self.allow_model_alias or served in names or served == self.revision:
            return True
        if self.revision and not COMMIT_RE.match(self.revision):
            return False  # a pinned snapshot is part of the cache key: another one is another model
        return any(served.startswith(f"{n}-") and SNAPSHOT_SUFFIX.fullmatch(served[len(n) :]) for n in names)

    def impostor(self, served: str, where: str) -> str:
        """The one line that stops a run whose server (`where`) answered as another model."""
        pinned = f" (revision {self.revision})" if self.revision else ""
        return (
            f"teacher {self.name}: {where} answered as model {served!r}, not the configured "
            f"{self.api_model!r}{pinned}; its answers are not cached. If it is the same model under "
            f"another name, set allow_model_alias: true on teacher {self.name} (the served name is then "
            f"recorded in meta/{self.name}.json)"
        )


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
