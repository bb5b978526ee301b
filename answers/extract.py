"""Reading a teacher's final answer out of an explained response: answer cues, sentences,
numbers, and the short answer of an explained reference. Options and labels: `answers.choice`.

The final answer is looked for where a response commits to one: after the last answer cue
("the answer is", "Answer:", "final answer:", "I would choose", "Label:" ...), taking the first
thing named right after it; failing that, in the concluding sentences, last first. Sentences end
at . ! ? before a capital letter, not after an abbreviation or an initial ("St. Louis", "Sen.
Barack Obama", "U.S. Army", "J. K. Rowling").
"""

from __future__ import annotations

import re

from answers.text import Number, clean, numbers_in, tokenize

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
            ("output", "label", "verdict", "prediction", "sentiment", "classification", "category", "topic"),
            r"(?m:^)\s*(?:output|label|verdict|prediction|sentiment|classification|category|topic)\s*:\s*",
        ),
    )
)
_ABBREVIATIONS = (
    "St",
    "Mr",
    "Mrs",
    "Ms",
    "Dr",
    "Mt",
    "Ft",
    "Sen",
    "Gov",
    "Gen",
    "Rep",
    "Jr",
    "Sr",
    "Prof",
    "Rev",
    "Lt",
    "Col",
    "Capt",
    "Sgt",
    "Pres",
    "vs",
)
# after an initial ("J. K. Rowling", "U.S. Army") a sentence ends only before a word that starts
# one ("... vitamin K. The answer: yes.")
_STARTERS = (
    r"(?:The|So|Therefore|Thus|Hence|This|That|These|It|He|She|They|We|I|A|An|In|Answer|Final|Yes|No)\b"
)
_SENTENCE_END = re.compile(
    rf"(?<=[.!?])(?:(?<!\b[A-Z]\.)|(?=\s+{_STARTERS}))"
    + "".join(f"(?<!\\b{a}\\.)" for a in _ABBREVIATIONS)
    + r"\s+(?![a-z(])|\n+"
)
REFERENCE_TAIL_CHARS = 400
_REASON = re.compile(r"\b(?:because|since)\b", re.IGNORECASE)
ASIDE = re.compile(r"\([^()]*\s[^()]*\)")
_FLUFF = re.compile(
    r"^\s*(?:i\s+hope|hope\s+this|let\s+me\s+know|feel\s+free|thanks?\b|thank\s+you|glad\s+to|happy\s+to"
    r"|confidence\s*:)",
    re.IGNORECASE,
)


def cues(text: str) -> list[tuple[int, int, str]]:
    """(where the cue starts, where its span starts, the span: the sentence after the cue) for each
    answer cue, last cue first."""
    low = text.lower()
    found: list[tuple[int, int]] = []
    for words, cue in ANSWER_CUES:
        for w in words:
            if w in low:
                found.extend(m.span() for m in cue.finditer(text))
                break
    out = []
    for start, end in sorted(found, key=lambda f: f[1], reverse=True):
        raw = _SENTENCE_END.split(text[end:], maxsplit=1)[0]
        span = raw.strip()
        if span:
            out.append((start, end + len(raw) - len(raw.lstrip()), span))
    return out


def cue_spans(text: str) -> list[str]:
    """The sentence after each answer cue, last cue first."""
    return [span for _, _, span in cues(text)]


def sentences(text: str) -> list[str]:
    """Non-empty sentences and lines of a text, last first, closing pleasantries left out."""
    parts = [s.strip() for s in _SENTENCE_END.split(text)]
    return [s for s in reversed(parts) if s and not _FLUFF.match(s)]


def first_line(text: str) -> str | None:
    """The first non-empty line, stripped."""
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), None)


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
        line = ASIDE.sub(" ", line)
        head = _REASON.split(line, maxsplit=1)[0]  # "366 days, because February ... the 29th"
        nums = numbers_in(head) or numbers_in(line)
        if nums:
            return nums[-1], False
    return None, False


def reference_answer(reference: str) -> str:
    """The short answer of an explained reference (FLAN CoT targets end "... So the answer is
    no."): the answer cue of its last sentence, when a sentence comes before it; else the
    reference, stripped."""
    ref = reference.strip()
    text = clean(ref)
    tail = max(0, len(text) - REFERENCE_TAIL_CHARS)  # the last sentence is in the tail
    found = cues(text[tail:])
    if found:
        cue, start, span = found[0]
        cue, start = cue + tail, start + tail
        if (
            not text[start + len(span) :].strip()
            and "\n" not in text[cue:start].lstrip()
            and _SENTENCE_END.search(text, 0, cue + 1)
        ):
            return span.rstrip(" .!")
    return ref


def final_span(response: str) -> str | None:
    """The span holding a free-form final answer: after the last answer cue, else the last line."""
    text = clean(response)
    spans = cue_spans(text)
    if spans:
        return spans[0]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    kept = [ln for ln in lines if not _FLUFF.match(ln)] or lines
    return kept[-1] if kept else None
