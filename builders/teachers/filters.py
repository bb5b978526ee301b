"""Response filters: why a generation does not become a trace row."""

from __future__ import annotations

from builders.teachers.config import TracesConfig

TRUNCATED, EMPTY, REFUSAL, TOO_SHORT, PROMPT_TOO_LONG = (
    "truncated",
    "empty_response",
    "refusal",
    "too_short",
    "prompt_too_long",
)
REQUEST_ERROR = "request_error"  # the request failed (the reason the failure-rate guard counts)


def response_problem(response: str, finish_reason: str, cfg: TracesConfig) -> tuple[str, str] | None:
    """(reason, detail) when the response is filtered out, else None. First match wins."""
    text = response.strip()
    if finish_reason == "length" and cfg.remove_truncated:
        return TRUNCATED, "finish_reason=length"
    if not text:
        return EMPTY, f"finish_reason={finish_reason}"
    lowered = text.lower()
    for phrase in cfg.refusal_phrases:
        if phrase.lower() in lowered:
            return REFUSAL, phrase
    if len(text) < cfg.min_response_chars:
        return TOO_SHORT, f"{len(text)} < {cfg.min_response_chars} chars"
    return None
