"""Chat completions as answers: the body of a 200 (or a Batch API output line's body) parsed into a
`GenResult`, or the request's `GenError` naming what is wrong with it; and which answers are empty
(a fault the backends ask again about, not an answer)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from builders.generation.base import REQUEST_ERROR, GenError, GenRequest, GenResult

logger = logging.getLogger(__name__)

CONTEXT_HINTS = ("context length", "maximum context", "too long", "max_model_len")  # a prompt too long


def parse_body(req: GenRequest, body: bytes) -> GenResult | GenError:
    """A 200's chat completion, or this request's `GenError` when the body is not one."""

    def fail(detail: str) -> GenError:
        logger.warning("prompt %s: %s", req.id, detail)
        return GenError(key=req.key, id=req.id, reason=REQUEST_ERROR, detail=detail)

    try:
        data: Any = json.loads(body)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        return fail(f"malformed JSON body: {exc} (body starts {body[:80].decode('utf-8', 'replace')!r})")
    return parse_completion(req.key, req.id, data, fail)


def parse_completion(key: str, pid: str, data: Any, fail: Callable[[str], GenError]) -> GenResult | GenError:
    """A chat completion object as a `GenResult`; `fail(detail)` when it is not one."""
    if not isinstance(data, dict):
        return fail(f"response is not a JSON object but {type(data).__name__}")
    choices = data.get("choices")
    if not choices:
        extra = f" (error: {str(data['error'])[:200]})" if data.get("error") else ""
        return fail(f"response has no choices{extra}")
    if not isinstance(choices, list) or not isinstance(choices[0], dict):
        return fail("response 'choices' is not a list of objects")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        return fail("response choice has no message")
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        return fail(f"message content is {type(content).__name__}, not a string")
    usage = data.get("usage") or {}
    try:
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        completion_tokens = int(usage.get("completion_tokens") or 0)
    except (AttributeError, TypeError, ValueError):
        return fail(f"malformed usage {str(usage)[:100]}")
    served = data.get("model")
    return GenResult(
        key=key,
        id=pid,
        response=content or "",
        finish_reason=str(choice.get("finish_reason") or "unknown"),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        served_model=None if served is None or served == "" else str(served),
    )


def is_empty(result: GenResult) -> bool:
    """An answer without text (missing, empty or blank content) that the token limit did not cut
    (`finish_reason` `length`: the model's own answer, filtered as truncated): a transient fault,
    asked again like a 5xx; what stays empty after the retries is an `empty_response`."""
    return not result.response.strip() and result.finish_reason != "length"
