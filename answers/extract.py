"""Reading a teacher's final answer out of an explained response.

The final answer is looked for where a response commits to one: after the last answer cue
("the answer is", "Answer:", "final answer:", "I would choose", "Label:" ...), taking the first
thing named right after it; failing that, in the concluding sentences, last first. The last
committed answer wins, so "At first I thought (A)... so the answer is (B)" reads (B). An option
(or label) named with a negation ("not (A)", "rather than yes") or rejected ("(A) is wrong") does
not count; a commitment that names two different options joined by "or"/"and"/"/", or with a
hedge word ("could", "might", "either", "maybe", "both"), is a hedge.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from answers.options import Options
from answers.text import Number, Token, clean, numbers_in, tokenize

ANSWER_CUES = tuple(  # (words one of which a text must hold, pattern): a prefilter, and one
    (words, re.compile(p, re.IGNORECASE))  # alternation would be several times slower to scan
    for words, p in (
        (
            ("answer",),
            r"\banswer\b(?:\s+to\s+(?:this|the|that)\s+(?:question|problem))?(?:\s+here)?"
            r"\s*(?:is|was|would\s+be|should\s+be|must\s+be|will\s+be|=|:|-(?=\s)|–|—)(?!\w)\s*:?\s*",
        ),
        (
            ("option", "choice", "label"),
            r"\b(?:correct|right|best|most\s+likely|most\s+appropriate)\s+(?:option|choice|label)\s+"
            r"(?:is|would\s+be)\b\s*:?\s*",
        ),
        (
            ("choose", "pick", "select", "go with"),
            r"\bI(?:\s+would|\s+will|['’]d|['’]ll)?\s+(?:choose|pick|select|go\s+with)\b\s*:?\s*",
        ),
        (
            (":",),
            r"(?m:^)\s*(?:output|label|verdict|prediction|sentiment|classification|category|topic)\s*:\s*",
        ),
    )
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?![a-z(])|\n+")
_CLAUSE = re.compile(r"[,;:]|\b(?:so|therefore|thus|hence|which\s+means|meaning|because|since)\b", re.I)
_LETTERS = (
    re.compile(r"\(([A-Z])\)"),
    re.compile(r"(?<![\w(])([A-Z])\)"),
    re.compile(r"(?:^|(?<=\s))([A-Z])[.:](?=\s|$)"),
    re.compile(r"(?i:\b(?:option|choice|letter))\s*\(?([A-Z])\b"),
    re.compile(r"^\s*\(?([A-Z])\)?\s*[.!]?\s*$"),
    re.compile(r"(?<![\w/])\(?([A-Z])\)?(?=\s*/\s*\(?[A-Z]\)?(?!\w))"),
    re.compile(r"(?<=/)\s*\(?([A-Z])\)?(?!\w)"),
    re.compile(r"\(([a-z])\)"),
)
_NUMBERED = re.compile(r"(?i:\b(?:option|choice)\s*(?:#|no\.?|number)?\s*)([1-9])\b")
_LETTER_AFTER_CUE = re.compile(
    r"^\s*\(?(?:([B-HJ-Z])\b|([AI])(?:\)|[.:,/]?\s*$|[.:,/](?=\s|\(?[A-Z]\b)"
    r"|(?=\s+(?:because|since|as|which|for|-|–|—)\s)))"
)
_OUT_OF = re.compile(r"\s+out\s+of\s+\d+\b", re.IGNORECASE)
_REASON = re.compile(r"\b(?:because|since)\b", re.IGNORECASE)
_ASIDE = re.compile(r"\([^()]*\s[^()]*\)")
_NEGATORS = frozenset(
    {"not", "never", "nor", "neither", "t", "cannot", "than", "unlike", "except", "nothing", "without"}
)
_REJECTED = frozenset({"wrong", "incorrect", "eliminated", "excluded", "ruled"})
_CONNECTORS = frozenset({"or", "and", "either", "maybe", "perhaps", "possibly", "also", "both", "option"})
_HEDGES = frozenset({"could", "might", "may", "either", "maybe", "perhaps", "possibly", "both", "unsure"})
_FLUFF = re.compile(
    r"^\s*(?:i\s+hope|hope\s+this|let\s+me\s+know|feel\s+free|thanks?\b|thank\s+you|glad\s+to|happy\s+to"
    r"|confidence\s*:)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Choices:
    """The answers a closed question allows: option texts as tokens, and whether letters name them."""

    words: tuple[tuple[str, ...], ...]
    lettered: int  # how many options letters A, B, ... may name (0: none)

    @classmethod
    def of(cls, texts: Sequence[str], lettered: int = 0) -> Choices:
        return cls(tuple(tuple(t.word for t in tokenize(x)) for x in texts), lettered)


@dataclass(frozen=True)
class Reading:
    """What a response commits to: one option, or a hedge between several."""

    index: int | None
    hedged: tuple[int, ...] = ()


class _Mention(NamedTuple):
    index: int
    start: int
    end: int


def cue_spans(text: str) -> list[str]:
    """The sentence after each answer cue, last cue first."""
    out = []
    low = text.lower()
    ends = sorted(
        m.end() for words, cue in ANSWER_CUES if any(w in low for w in words) for m in cue.finditer(text)
    )
    for end in reversed(ends):
        span = _SENTENCE_END.split(text[end:], maxsplit=1)[0].strip()
        if span:
            out.append(span)
    return out


def sentences(text: str) -> list[str]:
    """Non-empty sentences and lines of a text, last first, closing pleasantries left out."""
    parts = [s.strip() for s in _SENTENCE_END.split(text)]
    return [s for s in reversed(parts) if s and not _FLUFF.match(s)]


def _text_mentions(toks: list[Token], choices: Choices, span: str) -> list[_Mention]:
    """Option texts named in a span, longest first where they overlap."""
    words = [t.word for t in toks]
    found: list[tuple[int, int, int]] = []  # (token start, token end, index)
    for i, opt in enumerate(choices.words):
        n = len(opt)
        for j in range(len(words) - n + 1) if n else ():
            if words[j] == opt[0] and tuple(words[j : j + n]) == opt:
                found.append((j, j + n, i))
    taken: set[int] = set()
    out = []
    for j, k, i in sorted(found, key=lambda f: (f[0] - f[1], f[0])):
        if taken.isdisjoint(range(j, k)):
            if choices.words[i] == ("no",) and not _standalone(toks, j, span):
                continue
            taken.update(range(j, k))
            out.append(_Mention(i, toks[j].start, toks[k - 1].end))
    return out


def _standalone(toks: list[Token], j: int, span: str) -> bool:
    """A "no" that is an answer ("No, ...", "... is no.") rather than a determiner ("no way")."""
    after = span[toks[j].end :].lstrip(" ")
    return j == 0 or not after or not after[0].isalnum()


def _mentions(span: str, choices: Choices, after_cue: bool) -> list[_Mention]:
    """The options a span names (text, letter, "option 2"), negated and rejected ones left out."""
    span = _OUT_OF.sub(lambda m: " " * len(m.group()), span)  # "4 out of 5 stars" names "4 stars"
    toks = tokenize(span)
    found = _text_mentions(toks, choices, span)
    if choices.lettered:
        for p in _LETTERS:
            for m in p.finditer(span):
                i = ord(m.group(1).upper()) - ord("A")
                if i < choices.lettered:
                    found.append(_Mention(i, m.start(1), m.end(1)))
        for m in _NUMBERED.finditer(span):
            i = int(m.group(1)) - 1
            if i < choices.lettered:
                found.append(_Mention(i, m.start(1), m.end(1)))
        if after_cue:
            m = _LETTER_AFTER_CUE.match(span)
            if m:
                g = 1 if m.group(1) else 2
                i = ord(m.group(g)) - ord("A")
                if i < choices.lettered:
                    found.append(_Mention(i, m.start(g), m.end(g)))
    unique = {(m.start, m.index): m for m in found}
    ordered = sorted(unique.values(), key=lambda m: (m.start, -m.end))
    starts = [t.start for t in toks]
    kept: list[_Mention] = []
    last_negated: _Mention | None = None
    for mention in ordered:
        k = bisect.bisect_left(starts, mention.start)
        window = toks[max(0, k - 4) : k]
        cut = max((window[0].start if window else 0), _last_stop(span, mention.start))
        before = {t.word for t in window if t.start >= cut}
        after = {t.word for t in toks[k : k + 4] if t.start >= mention.end}
        negated = bool(before & _NEGATORS or after & _REJECTED or {"instead", "of"} <= before)
        if not negated and last_negated is not None:  # "not A or B", "rather than A or B"
            between = {t.word for t in tokenize(span[last_negated.end : mention.start])}
            negated = between <= {"or", "and", "nor"}
        if negated:
            last_negated = mention
        else:
            kept.append(mention)
            last_negated = None
    return kept


def _last_stop(span: str, end: int) -> int:
    """Where the clause holding position `end` starts (after the last , ; : . ! ? before it)."""
    return max(span.rfind(c, 0, end) for c in ",;:.!?") + 1


def _hedged(span: str, ms: list[_Mention]) -> tuple[int, ...] | None:
    """The options hedged between, when a span names several without committing to one."""
    distinct = tuple(dict.fromkeys(m.index for m in ms))
    if len(distinct) < 2:
        return None
    if {t.word for t in tokenize(span)} & _HEDGES:
        return distinct
    first = ms[0]
    second = next(m for m in ms if m.index != first.index)
    between = {t.word for t in tokenize(span[first.end : second.start])}
    if between <= _CONNECTORS:
        return distinct
    return None


def _decide(span: str, choices: Choices, after_cue: bool) -> Reading | None:
    ms = _mentions(span, choices, after_cue)
    if not ms:
        return None
    if not after_cue:  # a concluding sentence: asides set apart, its last clause that names an option
        asides = [(m.start(), m.end()) for m in _ASIDE.finditer(span)]
        outside = [m for m in ms if not any(a <= m.start < b for a, b in asides)]
        ms = outside or ms
        cuts = [0, *(m.end() for m in _CLAUSE.finditer(span))]
        for cut in reversed(cuts):
            tail = [m for m in ms if m.start >= cut]
            if tail:
                head = [m for m in ms if m.start < cut and m.index != tail[0].index]
                if head:  # "positive, or maybe neutral": the clause continues a hedge
                    between = {t.word for t in tokenize(span[head[-1].end : tail[0].start])}
                    if between <= _CONNECTORS:
                        return Reading(None, tuple(dict.fromkeys(m.index for m in (head[-1], *tail))))
                ms, span = tail, span[cut:]
                break
    hedged = _hedged(span, ms)
    return Reading(None, hedged) if hedged else Reading(ms[0].index)


def read_choice(response: str, choices: Choices) -> Reading | None:
    """The option a response commits to (or hedges between), None when it names none."""
    text = clean(response)
    for span in cue_spans(text):
        found = _decide(span, choices, after_cue=True)
        if found:
            return found
    first = first_line(text)
    if first:  # answer first ("No.\n\nThe premise ...")
        ms = _mentions(first, choices, after_cue=True)
        alone = len(tokenize(first)) <= len(choices.words[ms[0].index]) + 2 if ms else False
        if alone and len({m.index for m in ms}) == 1:
            return Reading(ms[0].index)
    for sent in sentences(text):
        found = _decide(sent, choices, after_cue=False)
        if found:
            return found
    return None


def first_line(text: str) -> str | None:
    """The first non-empty line, stripped."""
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), None)


def extract_choice(reply: str, options: Options) -> int | None:
    """The option a reply commits to (letters name options by position), None for none or a hedge."""
    reading = read_choice(reply, Choices.of(options.texts, len(options.texts)))
    return reading.index if reading else None


def read_number(response: str) -> tuple[Number | None, bool]:
    """(the number a response commits to, whether it hedges between two numbers)."""
    text = clean(response)
    for span in cue_spans(text):
        nums = numbers_in(span)
        if nums:
            if len(nums) > 1 and {t.word for t in tokenize(span[nums[0].end : nums[1].start])} <= {"or"}:
                return nums[0], nums[0].value != nums[1].value
            return nums[0], False
    first = first_line(text)
    if first and len(tokenize(first)) <= 3 and len(numbers_in(first)) == 1:  # answer first ("366 days.")
        return numbers_in(first)[0], False
    for line in sentences(text):
        line = _ASIDE.sub(" ", line)
        head = _REASON.split(line, maxsplit=1)[0]  # "366 days, because February ... the 29th"
        nums = numbers_in(head) or numbers_in(line)
        if nums:
            return nums[-1], False
    return None, False


def reference_answer(reference: str) -> str:
    """The short answer of an explained reference (FLAN CoT targets end "... So the answer is
    no."): the answer cue of its last sentence, when there is one; else the reference, stripped."""
    ref = reference.strip()
    last = sentences(clean(ref))
    spans = cue_spans(last[0]) if len(last) > 1 else []
    return spans[0].rstrip(" .!") if spans else ref


def final_span(response: str) -> str | None:
    """The span holding a free-form final answer: after the last answer cue, else the last line."""
    text = clean(response)
    spans = cue_spans(text)
    if spans:
        return spans[0]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    kept = [ln for ln in lines if not _FLUFF.match(ln)] or lines
    return kept[-1] if kept else None
