"""The verdict on one answer: its kind, the extracted final answer, correct / wrong / unverifiable.

The reference is first read for its short answer: FLAN CoT targets are a rationale ending "... So
the answer is no.", whose answer is the cue of its last sentence (`extract.reference_answer`).

Kinds (`answer_kind`), decided from the prompt and the reference alone (no task names):
- `open` first when the prompt asks for a question or for the reasoning behind an answer it gives
  (FLAN's CoT inversions "what was the question?", "Come up with a question and reasoning that
  would justify this answer: X", "explain the reasoning", "What step-by-step reasoning justifies
  that answer?"), or the reference is a question (`answers.kinds`): never checked on the "yes" or
  "(A)" inside it.
- `multiple_choice`: the question lists options (any FLAN option format, `answers.options`;
  whether or not `has_options` says so) and the reference names one of them by text, name
  ("Sentence A") or label ("(B)", "(1).", "B).", "[a].", "II.").
- `open`: the instruction asks for a generation — translate, summarise, paraphrase, rewrite,
  write/compose/generate/create, a title or headline — or the reference is longer than a short
  answer (more than 5 words or 40 characters).
- `closed`: everything else: a label, yes/no, true/false, a number, a short span.

Verdicts (`check_answer`; how the final answer is found: `answers.extract`, `answers.choice`):
- multiple choice: the option the response commits to against the reference's option; `wrong`
  when it hedges between two or commits to something that is no option ("So the answer is
  cake." when cake is not listed; option words inside the reasoning do not override it);
  `unverifiable` when it names no option and commits to nothing.
- closed, a label of a known family (yes/no, true/false, sentiment, entailment): read like an
  option among the family's labels (same rules; no label named is `unverifiable`).
- closed, a number: the committed number equals the reference's as a number ("1,000" = 1000,
  "5.0" = 5, "1/4" = 0.25, "$5" = "5 dollars", number words "five" = 5); units are compared only
  when both sides carry a known one ("5 km" = "5", "5 km" ≠ "5 m"); two numbers offered ("12 or
  13") is a hedge, `wrong`; no number at all is `unverifiable`.
- closed, a span: the final span (after the last answer cue, else the last line; or a short
  first line) contains the normalised reference, not negated and not hedged ("Paris or Lyon"):
  `correct`; its words beyond the question's are some of the reference's (a partial answer,
  "Orwell" for "George Orwell"): `unverifiable`; else `wrong`. No synonyms or aliases ("USA").
- an empty response is `unverifiable`; open kinds are always `unverifiable` (a judge decides).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache

import polars as pl

from answers.choice import Choices, Reading, options_choices, read_choice, sole_option
from answers.extract import final_span, first_line, read_number, reference_answer
from answers.kinds import (
    asks_for_generation,
    asks_for_question_or_reasoning,
    instruction,
    reference_is_question,
)
from answers.options import parse_options, reference_option
from answers.text import Number, as_number, clean, normalize, same_number, tokenize, word_set

logger = logging.getLogger(__name__)

KINDS = ("multiple_choice", "closed", "open")
VERDICTS = ("correct", "wrong", "unverifiable")
CLOSED_MAX_WORDS = 5
CLOSED_MAX_CHARS = 40
LABEL_FAMILIES = (
    ("yes", "no"),
    ("true", "false"),
    ("positive", "negative", "neutral"),
    ("entailment", "neutral", "contradiction"),
    ("entailment", "not entailment"),
)
_STOPWORDS = frozenset(
    {"of", "in", "on", "at", "to", "for", "from", "by", "with", "and", "or", "is", "are", "was", "were", "be"}
    | {"it", "its", "this", "that", "he", "she", "his", "her", "they", "their", "s"}
)
EXTRACTED_MAX_CHARS = 200  # a free-form final span is cut to this in `extracted`
FRAME_COLUMNS = ("answer_kind", "answer_check", "extracted_answer", "answer_reference")


@dataclass(frozen=True)
class Check:
    """One checked answer: kind (of KINDS), verdict (of VERDICTS), the extracted final answer
    (option text for multiple choice; None when none) and the reference as compared."""

    kind: str
    verdict: str
    extracted: str | None
    reference: str


@dataclass(frozen=True)
class _Setup:
    """What a (question, reference) pair is checked as; shared by every response to it."""

    kind: str
    reference: str
    choices: Choices | None = None
    texts: tuple[str, ...] = ()
    gold: int | None = None
    number: Number | None = None
    question: str = ""  # for span answers: the words it asks with are no answer


def _short(text: str) -> bool:
    return len(text) <= CLOSED_MAX_CHARS and len(text.split()) <= CLOSED_MAX_WORDS


_family_choices = lru_cache(maxsize=64)(Choices.of)


@lru_cache(maxsize=8192)
def _setup(question: str, reference: str) -> _Setup:
    ref = reference_answer(reference)
    lows = instruction(question)
    if not ref or reference_is_question(reference, ref) or asks_for_question_or_reasoning(lows):
        return _Setup("open", reference.strip())
    options = parse_options(question)
    if options is not None:
        gold = reference_option(ref, options)
        choices = options_choices(options)
        if gold is None and _short(ref):
            gold = sole_option(ref, choices)
        if gold is not None:
            return _Setup("multiple_choice", options.texts[gold], choices, options.texts, gold)
    if not _short(ref) or asks_for_generation(lows):
        return _Setup("open", reference.strip())
    norm = normalize(ref)
    family = tuple(dict.fromkeys(x for f in LABEL_FAMILIES if norm in f for x in f))
    if family:
        return _Setup("closed", norm, _family_choices(family), family, family.index(norm))
    number = as_number(ref)
    if number is not None:
        shown = f"{number.value:g}" + (f" {number.unit}" if number.unit else "")
        return _Setup("closed", shown, number=number)
    return _Setup("closed", norm, question=question)


def answer_kind(question: str, reference: str, has_options: bool) -> str:
    """multiple_choice, closed or open (see the module docstring); `has_options` is FLAN's flag,
    kept for the record: options are recognised from the question itself."""
    del has_options
    return _setup(question, reference).kind


def _choice_verdict(s: _Setup, reading: Reading | None) -> tuple[str, str | None]:
    if reading is None:
        return "unverifiable", None
    if reading.other is not None:
        return "wrong", _clip(reading.other)
    if reading.index is None:
        return "wrong", " / ".join(s.texts[i] for i in reading.hedged)
    return ("correct" if reading.index == s.gold else "wrong"), s.texts[reading.index]


def _span_verdict(reference: str, response: str, question: str) -> tuple[str, str | None]:
    """A short span: contained in the final span (or in a short first line), not negated or hedged,
    is correct; a final span whose new words (not the question's) are some of the reference's is
    unverifiable (a partial answer: "Orwell" for "George Orwell"); anything else is wrong."""
    span = final_span(response)
    ref = tuple(reference.split())
    if span is None or not ref:  # no answer, or a reference of articles only ("a", "an.")
        return "unverifiable", None
    first = first_line(clean(response)) or span
    candidates = [span] if first == span or len(first.split()) > CLOSED_MAX_WORDS + 2 else [span, first]
    for cand in candidates:
        toks = tokenize(cand)
        words = [t.word for t in toks]
        for j in range(len(words) - len(ref) + 1):
            if tuple(words[j : j + len(ref)]) == ref:
                before, after = words[max(0, j - 2) : j], words[j + len(ref) : j + len(ref) + 1]
                if {"not", "t", "never"} & set(before) or "or" in before[-1:] or "or" in after:
                    return "wrong", _clip(cand)
                return "correct", cand[toks[j].start : toks[j + len(ref) - 1].end]
    asked = word_set(question)
    new_ref = set(ref) - _STOPWORDS - asked
    new_span = set(normalize(span).split()) - _STOPWORDS - asked
    if new_ref & new_span and new_span <= new_ref:
        return "unverifiable", _clip(span)
    return "wrong", _clip(span)


def _clip(text: str) -> str:
    return text if len(text) <= EXTRACTED_MAX_CHARS else text[: EXTRACTED_MAX_CHARS - 1] + "…"


def check_answer(question: str, reference: str, response: str, has_options: bool) -> Check:
    """Check one response against its reference (see the module docstring for the rules)."""
    del has_options
    s = _setup(question, reference)
    if s.kind == "open":
        return Check(s.kind, "unverifiable", None, s.reference)
    if not response.strip():
        return Check(s.kind, "unverifiable", None, s.reference)
    if s.choices is not None:
        verdict, extracted = _choice_verdict(s, read_choice(response, s.choices))
    elif s.number is not None:
        got, hedged = read_number(response)
        if got is None:
            verdict, extracted = "unverifiable", None
        else:
            ok = same_number(got, s.number) and not hedged
            verdict, extracted = ("correct" if ok else "wrong"), got.text
    else:
        verdict, extracted = _span_verdict(s.reference, response, s.question)
    return Check(s.kind, verdict, extracted, s.reference)


def _isolated(question: str, reference: str, response: str, has_options: bool) -> Check:
    """`check_answer`, a row the rules fail on read as unverifiable (logged) instead of stopping the
    stage: its kind is `open` when the question itself cannot be read."""
    try:
        return check_answer(question, reference, response, has_options)
    except Exception as exc:  # one unreadable row must not discard the checks of the others
        logger.warning(
            "answer check failed on a row (%s: %s); recorded as unverifiable", type(exc).__name__, exc
        )
        try:
            kind = answer_kind(question, reference, has_options)
        except Exception:
            kind = "open"
        return Check(kind, "unverifiable", None, reference.strip())


def check_frame(df: pl.DataFrame) -> pl.DataFrame:
    """answer_kind, answer_check, extracted_answer (null when none) and answer_reference for every
    row of a frame with question, reference, response and has_options; same height and order."""
    cols = [df[c].to_list() for c in ("question", "reference", "response", "has_options")]
    checks = [_isolated(q or "", r or "", a or "", bool(o)) for q, r, a, o in zip(*cols, strict=True)]
    return pl.DataFrame(
        {
            "answer_kind": [c.kind for c in checks],
            "answer_check": [c.verdict for c in checks],
            "extracted_answer": [c.extracted for c in checks],
            "answer_reference": [c.reference for c in checks],
        },
        schema=dict.fromkeys(FRAME_COLUMNS, pl.String),
    )
