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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.compute as pc
from datasets import Features, List, Value, concatenate_datasets

from core.chat import build_messages
from core.errors import PipelineError

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
SLICE_ROWS = 262_144  # rows a `tokenize_dataset` map call reads (its workers' share of the file)


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


def _pieces(
    tokenizer: Any, row_id: str, system_prompt: str | None, question: str, response: str
) -> tuple[str, str, str]:
    """The rendered conversation cut into (prompt up to the reply, the reply's content, the rest)."""
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
    return full_text[:start], full_text[start:end], full_text[end:]


def _assemble(
    row_id: str, head: list[int], body: list[int], tail: list[int], special: set[int]
) -> tuple[list[int], int, int]:
    """(input ids, first and end position of the labelled span): the reply, and the first token
    after it when that is a special token (EOS or end-of-turn)."""
    if not head:
        raise FormatError(f"row {row_id}: the rendered prompt is empty")
    n_stop = 1 if tail and tail[0] in special else 0
    return head + body + tail, len(head), len(head) + len(body) + n_stop


def span_labels(ids: Sequence[int], start: int, end: int) -> list[int]:
    """Labels of a tokenized row: its ids inside the labelled span [start, end), -100 elsewhere."""
    return [IGNORE_INDEX] * start + list(ids[start:end]) + [IGNORE_INDEX] * (len(ids) - end)


def format_example(
    tokenizer: Any, *, row_id: str, system_prompt: str | None, question: str, response: str
) -> Example:
    """Render one row with the chat template and label only the assistant's tokens."""
    head, body, tail = (
        _encode(tokenizer, t) for t in _pieces(tokenizer, row_id, system_prompt, question, response)
    )
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    ids, start, end = _assemble(row_id, head, body, tail, special)
    return Example(id=row_id, input_ids=ids, labels=span_labels(ids, start, end))


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


def token_dtype(tokenizer: Any) -> str:
    """The smallest integer type that holds every token id of `tokenizer` (uint16 up to 65,536)."""
    return "uint16" if len(tokenizer) <= 1 << 16 else "int32"


def tokenize_batch(
    batch: dict[str, list[Any]], tokenizer: Any, *, max_length: int, overlong: str
) -> dict[str, list[Any]]:
    """One `Dataset.map` batch: each row's token ids, its labelled span, length, drop reason and
    whether it was cut; a dropped row has no ids and length 0. The same ids and spans as
    `process_row`, with the batch's texts tokenized in one call."""
    n = len(batch["question"])
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    texts: list[str] = []
    rows: list[int] = []
    drop = [""] * n
    for i in range(n):
        response = batch["response"][i] or ""
        if not response.strip():
            drop[i] = "empty_response"
            continue
        row_id, system = str(batch["id"][i]), batch["system_prompt"][i] or ""
        texts.extend(_pieces(tokenizer, row_id, system, batch["question"][i], response))
        rows.append(i)
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    out: dict[str, list[Any]] = {"input_ids": [[] for _ in range(n)], "drop": drop, "cut": [False] * n}
    out.update({k: [0] * n for k in ("label_start", "label_end", "length")})
    for k, i in enumerate(rows):
        head, body, tail = (encoded[3 * k + j] if texts[3 * k + j] else [] for j in range(3))
        ids, start, end = _assemble(str(batch["id"][i]), list(head), list(body), list(tail), special)
        if len(ids) > max_length:
            end = min(end, max_length)
            if overlong == "drop" or end <= start:
                drop[i] = "overlong" if overlong == "drop" else "no_labels_after_truncation"
                continue
            ids = ids[:max_length]
            out["cut"][i] = True
        out["input_ids"][i], out["label_start"][i], out["label_end"][i], out["length"][i] = (
            ids,
            start,
            end,
            len(ids),
        )
    return out


def tokenize_dataset(
    ds: Any,
    tokenizer: Any,
    *,
    max_length: int,
    overlong: str = "drop",
    num_proc: int | None = None,
    slice_rows: int = SLICE_ROWS,
) -> tuple[Any, FormatStats]:
    """Format a `datasets.Dataset` of release rows with `Dataset.map` (Arrow-backed, cached, parallel).

    Returns every row (columns id, input_ids, label_start, label_end, length; a dropped row has
    length 0 and no ids, so no pack takes it) and the counts. Memory is bounded by a batch: token
    ids go to Arrow files (uint16 when the vocabulary allows), labels are the span [label_start,
    label_end) of the ids (`span_labels`), and the counts are read with Arrow compute, never
    through per-row Python objects. The rows are mapped `slice_rows` at a time, the results
    concatenated in order: with `num_proc`, each slice's workers are new processes, so the pages of
    the memory-mapped input a worker has read leave with it instead of staying resident in one
    worker until the whole dataset has been read.
    """
    features = Features(
        {
            "id": Value("string"),
            "input_ids": List(Value(token_dtype(tokenizer))),
            **{k: Value("int32") for k in ("label_start", "label_end", "length")},
            "drop": Value("string"),
            "cut": Value("bool"),
        }
    )
    text = ["system_prompt", "question", "response"]
    rows = ds.select_columns(["id", *text])
    parts = []
    for start in range(0, max(len(rows), 1), slice_rows):
        end = min(start + slice_rows, len(rows))
        part = rows if len(rows) <= slice_rows else rows.select(range(start, end))
        parts.append(part.map(
            tokenize_batch, batched=True, num_proc=num_proc, remove_columns=text, features=features,
            fn_kwargs={"tokenizer": tokenizer, "max_length": max_length, "overlong": overlong},
            desc=f"formatting rows {start:,}-{start + len(part):,} of {len(rows):,}",
        ))  # fmt: skip
    mapped = parts[0] if len(parts) == 1 else concatenate_datasets(parts)
    table = mapped.data  # fresh map results: no indices mapping over them
    stats = FormatStats(rows_in=len(mapped))
    for item in pc.value_counts(table.column("drop")).to_pylist():
        if item["values"]:
            stats.removed = {**(stats.removed or {}), item["values"]: item["counts"]}
    stats.truncated = int(pc.sum(table.column("cut")).as_py() or 0)
    stats.examples = stats.rows_in - sum((stats.removed or {}).values())
    return mapped.remove_columns(["drop", "cut"]), stats


def token_columns(ds: Any) -> tuple[np.ndarray, np.ndarray]:
    """(length, label count) of every row of a `tokenize_dataset` result, as arrays."""
    table = ds.data
    lengths = table.column("length").to_numpy()
    labels = pc.subtract(table.column("label_end"), table.column("label_start")).to_numpy()
    return lengths.astype(np.int64), np.where(lengths > 0, labels, 0).astype(np.int64)
