"""Scoring generations against FLAN references.

- Short answers and classification: normalized exact match (lowercase, punctuation and the
  articles a/an/the removed, whitespace collapsed). A reply counts when the whole reply, its first
  or last line, or the text after its last "answer is"/"answer:" matches the reference, so an
  explained answer ("... The answer is 4.") scores like a bare one.
- Multiple choice (`has_options`): the options are parsed from the question (FLAN's
  "OPTIONS:\\n- a\\n- b" lists, and lettered "(A) x", "A) x", "A. x" lists); the chosen option is
  extracted from the reply ("(B)", "B)", "Answer: B", "the answer is B", or an option's text —
  the last one mentioned wins); it is right when it is the option the reference names.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans(dict.fromkeys(string.punctuation, " "))
_ANSWER_CUE = re.compile(r"(?:the\s+(?:correct\s+|final\s+)?answer\s+is|answer\s*:)\s*", re.IGNORECASE)
_OPTIONS_HEADER = re.compile(r"(?:^|\n)\s*options\s*:?\s*", re.IGNORECASE)
_DASH_OPTION = re.compile(r"^\s*-\s+(.+?)\s*$", re.MULTILINE)
_LETTERED = re.compile(r"(?:^|\s)\(?([A-Z])[\).:]\s+(.+?)(?=\s+\(?[A-Z][\).:]\s|\n|$)")
_LETTER_IN_REPLY = [
    re.compile(r"(?i:answer(?:\s+is)?|option|choice)\s*:?\s*\(?([A-Z])\)?(?![A-Za-z])"),
    re.compile(r"\(([A-Z])\)"),
    re.compile(r"(?:^|\s)([A-Z])[\).:](?:\s|$)"),
    re.compile(r"^\s*([A-Z])\s*$"),
]


def normalize(text: str) -> str:
    """Lowercase, drop punctuation and articles, collapse whitespace."""
    text = text.lower().translate(_PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


@dataclass(frozen=True)
class Options:
    """Answer options parsed from a question; `letters` is empty for unlettered (dash) lists."""

    texts: list[str]
    letters: list[str]

    def index_of_letter(self, letter: str) -> int | None:
        letter = letter.upper()
        if self.letters:
            return self.letters.index(letter) if letter in self.letters else None
        i = ord(letter) - ord("A")
        return i if 0 <= i < len(self.texts) else None


def parse_options(question: str) -> Options | None:
    """The answer options listed in a question, or None when none can be found."""
    headers = list(_OPTIONS_HEADER.finditer(question))
    header = headers[-1] if headers else None
    body = question[header.end() :] if header else question
    dashed = _DASH_OPTION.findall(body)
    if header and len(dashed) >= 2:
        return Options(texts=dashed, letters=[])
    lettered = _LETTERED.findall(body)
    letters = [m[0] for m in lettered]
    if len(lettered) >= 2 and letters == [chr(ord("A") + i) for i in range(len(letters))]:
        return Options(texts=[m[1].strip() for m in lettered], letters=letters)
    if len(dashed) >= 2:
        return Options(texts=dashed, letters=[])
    return None


def _mentions(reply: str, options: Options) -> int | None:
    """Index of the option whose text the reply mentions last (longest on ties)."""
    norm_reply = f" {normalize(reply)} "
    best: tuple[int, int, int] | None = None  # (end position, length, index)
    for i, text in enumerate(options.texts):
        norm = normalize(text)
        if not norm:
            continue
        pos = norm_reply.rfind(f" {norm} ")
        if pos >= 0:
            key = (pos + len(norm), len(norm), i)
            if best is None or key[:2] > best[:2]:
                best = key
    return best[2] if best else None


def extract_choice(reply: str, options: Options) -> int | None:
    """The option a reply chooses: a letter cue first, then the text of an option."""
    if options.letters or len(options.texts) <= 26:
        for pattern in _LETTER_IN_REPLY:
            found = pattern.findall(reply)
            if found:
                idx = options.index_of_letter(found[-1])
                if idx is not None:
                    return idx
    cue = list(_ANSWER_CUE.finditer(reply))
    if cue:
        idx = _mentions(reply[cue[-1].end() :], options)
        if idx is not None:
            return idx
    return _mentions(reply, options)


def answer_candidates(reply: str) -> list[str]:
    """The spans of a reply that may hold its short answer."""
    reply = reply.strip()
    lines = [ln for ln in reply.splitlines() if ln.strip()]
    out = [reply]
    if lines:
        out += [lines[0], lines[-1]]
    cue = list(_ANSWER_CUE.finditer(reply))
    if cue:
        tail = reply[cue[-1].end() :].strip()
        out += [tail, tail.split("\n")[0]]
        first_sentence = re.split(r"(?<=[.!?])\s", tail)[0]
        out.append(first_sentence)
    return out


def exact_match(reply: str, reference: str) -> bool:
    """Normalized exact match of any answer span of the reply against the reference."""
    ref = normalize(reference)
    return bool(ref) and any(normalize(c) == ref for c in answer_candidates(reply))


def score_one(question: str, reference: str, reply: str, has_options: bool) -> tuple[bool, str]:
    """(correct, method): option extraction for multiple choice, normalized exact match otherwise."""
    options = parse_options(question) if has_options else None
    if options is not None:
        gold = extract_choice(reference, options)
        if gold is not None:
            return extract_choice(reply, options) == gold, "option"
    return exact_match(reply, reference), "exact_match"


def accuracy_table(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Accuracy overall and per submix from rows with `submix` and `correct`."""
    by: dict[str, list[int]] = {}
    n = right = 0
    for r in rows:
        c = int(bool(r["correct"]))
        by.setdefault(r["submix"], [0, 0])
        by[r["submix"]][0] += 1
        by[r["submix"]][1] += c
        n += 1
        right += c
    return {
        "overall": {"n": n, "correct": right, "accuracy": round(right / n, 4) if n else None},
        "by_submix": {
            k: {"n": v[0], "correct": v[1], "accuracy": round(v[1] / v[0], 4)} for k, v in sorted(by.items())
        },
    }
