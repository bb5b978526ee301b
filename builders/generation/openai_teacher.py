"""The `openai` backend's teacher config, and how the backend classes what a server answers: the
statuses it retries, a throttle, refused credentials, transport errors and a request's token cost."""

from __future__ import annotations

from typing import ClassVar, Literal

import aiohttp
from pydantic import Field

from builders.generation.api import ApiTeacher
from builders.generation.base import GenRequest

RETRY_STATUS = {408, 409, 425, 500, 502, 503, 504}
THROTTLED = 429
AUTH_STATUS = {401, 403}
QUOTA_CODES = ("insufficient_quota",)  # a 429 that waiting does not cure
TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError)
NEVER_CONNECTED = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError, aiohttp.InvalidURL,
                   aiohttp.NonHttpUrlClientError)  # fmt: skip
UNREACHABLE_REQUESTS = 3  # requests in a row that found no URL accepting connections: stop the run
CHARS_PER_TOKEN = 4  # OpenAI's rule of thumb for English text
MAX_THROTTLE_S = 60.0  # the longest a 429 without Retry-After pauses a URL


class OpenAITeacher(ApiTeacher):
    """A teacher behind one or several OpenAI-compatible chat completion endpoints."""

    PRICED_AT: ClassVar[str] = "online"
    GATE_WAITS: ClassVar[bool] = True
    backend: Literal["openai"] = "openai"
    base_urls: list[str] = Field(min_length=1)
    concurrency: int = Field(
        8, ge=1, description="the most requests in flight per base URL (a fleet of n URLs has n x this)"
    )
    rpm: float | None = Field(None, gt=0.0, description="the teacher's own ceiling of requests per minute")
    tpm: float | None = Field(
        None, gt=0.0, description="... of tokens per minute (prompt tokens + max_tokens, as OpenAI counts)"
    )
    max_retries: int = Field(5, ge=0, description="retries of a 5xx, timeout or connection error (not 429)")
    backoff_s: float = Field(1.0, ge=0.0)
    timeout_s: float = Field(600.0, gt=0.0)


def error_name(exc: BaseException) -> str:
    """A transport failure's short name (`detail` of a request that used up its retries)."""
    names = ((aiohttp.ConnectionTimeoutError, "ConnectTimeout"), (TimeoutError, "ReadTimeout"),
             (aiohttp.ClientConnectorError, "ConnectError"))  # fmt: skip
    return next((name for kind, name in names if isinstance(exc, kind)), type(exc).__name__)


def request_cost(req: GenRequest) -> float:
    """The tokens a request counts against a token limit: its prompt tokens (when not counted,
    characters / 4, as OpenAI estimates them) plus `max_tokens`."""
    prompt = req.prompt_tokens
    if prompt is None:
        prompt = sum(len(m["content"]) for m in req.messages) / CHARS_PER_TOKEN
    return float(prompt + req.max_tokens)
