"""Chat formatting and label masking for supervised fine-tuning.

Each release row becomes a conversation (system — omitted when empty —, user, assistant) rendered
with the student tokenizer's own chat template. Only the assistant's tokens carry labels; every
other position is -100.

The split between prompt and response is found from the rendered text, not from a joint
tokenization: the text is cut at the start and end of the assistant's content and the pieces are
tokenized separately, so no token straddles the prompt/response boundary. That is also how the
model sees it at inference (the prompt ends with the generation header; the reply is generated
token by token). The first token after the assistant's content is labelled too when it is a
special token (EOS or end-of-turn), so the student learns to stop.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from core.chat import build_messages
from core.errors import PipelineError

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100


class FormatError(PipelineError, ValueError):
    """A row cannot be formatted with the tokenizer's chat template."""


@dataclass(frozen=True)
class Example:
    """One tokenized conversation: `labels` is -100 everywhere but the assistant's tokens."""

    id: str
    input_ids: list[int]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def n_label_tokens(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)


def _render(tokenizer: Any, messages: list[dict[str, str]], *, add_generation_prompt: bool) -> str:
    text = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )
    if not isinstance(text, str):
        raise FormatError(f"chat template returned {type(text).__name__}, expected a string")
    return text


def _encode(tokenizer: Any, text: str) -> list[int]:
    if not text:
        return []
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def prompt_ids(tokenizer: Any, system_prompt: str | None, question: str) -> list[int]:
    """Token ids of the prompt up to and including the assistant's generation header (for inference)."""
    if getattr(tokenizer, "chat_template", None) is None:
        raise FormatError("the tokenizer has no chat template")
    messages = build_messages(system_prompt, question)
    return _encode(tokenizer, _render(tokenizer, messages, add_generation_prompt=True))


def format_example(
    tokenizer: Any, *, row_id: str, system_prompt: str | None, question: str, response: str
) -> Example:
    """Render one row with the chat template and label only the assistant's tokens."""
    if getattr(tokenizer, "chat_template", None) is None:
        raise FormatError("the tokenizer has no chat template")
    if not response:
        raise FormatError(f"row {row_id}: empty response")
    prompt_text = _render(tokenizer, build_messages(system_prompt, question), add_generation_prompt=True)
    full_text = _render(
        tokenizer, build_messages(system_prompt, question, response), add_generation_prompt=False
    )
    if not full_text.startswith(prompt_text):
        raise FormatError(
            f"row {row_id}: the chat template's rendering with the reply does not start with its rendering "
            "of the prompt plus generation header; cannot locate the assistant's tokens"
        )
    start = full_text.find(response, len(prompt_text))
    content = response
    if start < 0:  # templates that trim the content
        content = response.strip()
        start = full_text.find(content, len(prompt_text)) if content else -1
    if start < 0:
        raise FormatError(
            f"row {row_id}: the assistant's content does not appear in the rendered conversation"
        )
    end = start + len(content)
    head = _encode(tokenizer, full_text[:start])
    body = _encode(tokenizer, full_text[start:end])
    tail = _encode(tokenizer, full_text[end:])
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    n_stop = 1 if tail and tail[0] in special else 0
    input_ids = head + body + tail
    labels = [IGNORE_INDEX] * len(head) + body + tail[:n_stop] + [IGNORE_INDEX] * (len(tail) - n_stop)
    if not head:
        raise FormatError(f"row {row_id}: the rendered prompt is empty")
    return Example(id=row_id, input_ids=input_ids, labels=labels)


@dataclass
class FormatStats:
    """Counts of what happened to the rows of one phase."""

    rows_in: int = 0
    examples: int = 0
    truncated: int = 0
    removed: dict[str, int] | None = None

    def drop(self, reason: str) -> None:
        self.removed = self.removed or {}
        self.removed[reason] = self.removed.get(reason, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows_in": self.rows_in,
            "examples": self.examples,
            "truncated": self.truncated,
            "removed": dict(sorted((self.removed or {}).items())),
        }


def fit_to_length(example: Example, max_length: int, overlong: str) -> Example | None:
    """Apply the overlong policy: keep as is, truncate (tail cut off), or drop (None).

    A truncated example keeps only its first `max_length` tokens, so no label of the cut tail
    remains; it is dropped when no label survives the cut.
    """
    if len(example) <= max_length:
        return example
    if overlong == "drop":
        return None
    cut = Example(example.id, example.input_ids[:max_length], example.labels[:max_length])
    return cut if cut.n_label_tokens > 0 else None


def process_row(
    tokenizer: Any, row: Mapping[str, Any], *, max_length: int, overlong: str
) -> tuple[Example | None, str, bool]:
    """(example or None, drop reason or "", truncated) for one release row."""
    row_id = str(row.get("id", ""))
    response = row.get("response") or ""
    if not response.strip():
        return None, "empty_response", False
    ex = format_example(
        tokenizer,
        row_id=row_id,
        system_prompt=row.get("system_prompt") or "",
        question=row["question"],
        response=response,
    )
    fitted = fit_to_length(ex, max_length, overlong)
    if fitted is None:
        return None, ("overlong" if overlong == "drop" else "no_labels_after_truncation"), False
    return fitted, "", len(fitted) < len(ex)


def format_rows(
    tokenizer: Any,
    rows: Iterable[Mapping[str, Any]],
    *,
    max_length: int,
    overlong: str = "drop",
) -> tuple[list[Example], FormatStats]:
    """Format release rows into examples no longer than `max_length`, counting every drop."""
    stats = FormatStats()
    out: list[Example] = []
    for row in rows:
        stats.rows_in += 1
        ex, reason, truncated = process_row(tokenizer, row, max_length=max_length, overlong=overlong)
        if ex is None:
            stats.drop(reason)
            continue
        stats.truncated += int(truncated)
        out.append(ex)
    stats.examples = len(out)
    return out, stats


def tokenize_dataset(
    ds: Any, tokenizer: Any, *, max_length: int, overlong: str = "drop", num_proc: int | None = None
) -> tuple[Any, FormatStats]:
    """Format a `datasets.Dataset` of release rows with `Dataset.map` (Arrow-backed, cached, parallel).

    Returns the kept examples (columns id, input_ids, labels, length, n_labels) and the counts.
    Memory does not grow with the corpus: the token columns live in Arrow files, not Python lists.
    """

    def batch_fn(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {
            k: [] for k in ("input_ids", "labels", "length", "n_labels", "drop", "cut")
        }
        for i in range(len(batch["question"])):
            row = {k: batch[k][i] for k in batch}
            ex, reason, truncated = process_row(tokenizer, row, max_length=max_length, overlong=overlong)
            out["input_ids"].append(ex.input_ids if ex else [])
            out["labels"].append(ex.labels if ex else [])
            out["length"].append(len(ex) if ex else 0)
            out["n_labels"].append(ex.n_label_tokens if ex else 0)
            out["drop"].append(reason)
            out["cut"].append(truncated)
        return out

    keep = ["id", "system_prompt", "question", "response"]
    mapped = ds.select_columns(keep).map(
        batch_fn, batched=True, num_proc=num_proc, remove_columns=["system_prompt", "question", "response"],
        desc="formatting",
    )  # fmt: skip
    stats = FormatStats(rows_in=len(mapped))
    for reason in mapped["drop"]:
        if reason:
            stats.drop(reason)
    stats.truncated = sum(mapped["cut"])
    kept = mapped.filter(lambda d: d == "", input_columns="drop").remove_columns(["drop", "cut"])
    stats.examples = len(kept)
    return kept, stats
