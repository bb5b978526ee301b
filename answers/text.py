"""Text primitives of answer checking: tokens, the normal form, and numbers (with units)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

_TOKEN = re.compile(r"[^\W_]+")
ARTICLES = frozenset({"a", "an", "the"})
# An article is a word before another word ("a man", "the heart"); a letter that ends a phrase or
# precedes punctuation ("Sentence A", "(A)", "A).", "is a.") or follows a label noun ("Sentence A
# is wrong", "option a") is an option label and stays.
LABEL_NOUNS = (
    "sentence",
    "option",
    "choice",
    "statement",
    "letter",
    "candidate",
    "item",
    "person",
    "speaker",
)
_ARTICLE = re.compile(
    r"\b(?:a|an|the)\b" + "".join(f"(?<!{n} a)" for n in LABEL_NOUNS) + r"(?=\s+[^\W_])", re.IGNORECASE
)
_MARKUP = re.compile(r"\*\*|__|`")
_WORD_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30,
    "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
}  # fmt: skip
_WORD_SCALES = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
_NUM = r"[-+−]?(?:\d+/\d+(?![/\d])|(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)"
_NUMBER = re.compile(  # not an ordinal ("the 29th"), not a piece of a date ("3/5/2021")
    rf"(?<![\w.,/])([$€£]\s?)?({_NUM})(?![\d,/]\d)(?!(?:st|nd|rd|th)\b)(?:\s?(%|°\s?[CF]?|[A-Za-z]+\b))?",
    re.IGNORECASE,
)
_NUMBER_ONLY = re.compile(rf"^\s*([$€£]\s?)?({_NUM})\s?(%|°\s?[CF]?|[A-Za-z]+)?\s*\.?\s*$", re.IGNORECASE)
_UNITS = {
    "km": "km", "kilometer": "km", "kilometers": "km", "kilometre": "km", "kilometres": "km",
    "m": "m", "meter": "m", "meters": "m", "metre": "m", "metres": "m",
    "cm": "cm", "centimeter": "cm", "centimeters": "cm", "mm": "mm", "millimeters": "mm",
    "mi": "mi", "mile": "mi", "miles": "mi", "ft": "ft", "foot": "ft", "feet": "ft",
    "inch": "in", "inches": "in",
    "kg": "kg", "kilogram": "kg", "kilograms": "kg", "g": "g", "gram": "g", "grams": "g",
    "lb": "lb", "lbs": "lb", "pound": "lb", "pounds": "lb",
    "l": "l", "liter": "l", "liters": "l", "litre": "l", "litres": "l", "ml": "ml",
    "h": "h", "hr": "h", "hrs": "h", "hour": "h", "hours": "h",
    "min": "min", "mins": "min", "minute": "min", "minutes": "min",
    "s": "s", "sec": "s", "secs": "s", "second": "s", "seconds": "s",
    "day": "day", "days": "day", "week": "week", "weeks": "week", "year": "year", "years": "year",
    "%": "%", "percent": "%",
    "$": "usd", "dollar": "usd", "dollars": "usd", "usd": "usd", "€": "eur", "euro": "eur", "euros": "eur",
    "£": "gbp",
}  # fmt: skip


def clean(text: str) -> str:
    """The text without Markdown emphasis and code marks."""
    return _MARKUP.sub("", text)


def normalize(text: str) -> str:
    """Lowercase, drop punctuation and articles (not option labels: "Sentence A" keeps its "a"),
    collapse whitespace; a lone article ("A.") is no text."""
    words = _TOKEN.findall(_ARTICLE.sub(" ", text.lower()))
    return "" if len(words) == 1 and words[0] in ARTICLES else " ".join(words)


def word_set(text: str) -> frozenset[str]:
    """The lowercased words of a text, articles left out (for "which words does it use")."""
    return frozenset(_TOKEN.findall(text.lower())) - ARTICLES


class Token(NamedTuple):
    """One lowercased word of a text, articles excluded, with its character span."""

    word: str
    start: int
    end: int


def tokenize(text: str) -> list[Token]:
    """The words of `text` as `normalize` sees them (a lone article kept), with positions in `text`."""
    articles = {m.start() for m in _ARTICLE.finditer(text)}
    return [
        Token(m.group().lower(), m.start(), m.end())
        for m in _TOKEN.finditer(text)
        if m.start() not in articles
    ]


@dataclass(frozen=True)
class Number:
    """A number found in a text: its value, its unit (canonical, or None) and its span."""

    value: float
    unit: str | None
    start: int
    end: int
    text: str


def _unit(prefix: str | None, suffix: str | None) -> str | None:
    for raw in (prefix, suffix):
        if raw:
            key = raw.strip().lower()
            key = "°" if key.startswith("°") else key
            if key in _UNITS or key == "°":
                return _UNITS.get(key, key)
    return None


def _value(text: str) -> float:
    text = text.replace(",", "").replace("−", "-")
    if "/" in text:
        num, den = text.split("/")
        return float(num) / float(den) if float(den) else float("nan")
    return float(text)


def _number(prefix: str | None, digits: str, suffix: str | None, start: int, end: int) -> Number:
    """A number from its parts; a suffix that is no known unit ("5 apples") is left out of its text."""
    unit = _unit(prefix, suffix)
    text = f"{prefix or ''}{digits}" + (f" {suffix.strip()}" if suffix and _unit(None, suffix) else "")
    return Number(_value(digits), unit, start, end, text)


def _word_numbers(text: str) -> list[Number]:
    """Numbers written in words ("five", "twenty-five", "two hundred"), one per run of number words."""
    out: list[Number] = []
    run: list[Token] = []
    for tok in [*tokenize(text), Token("", len(text), len(text))]:
        if tok.word in _WORD_UNITS or (run and tok.word in _WORD_SCALES):
            run.append(tok)
            continue
        if run:
            total = current = 0
            for t in run:
                if t.word in _WORD_SCALES:
                    current = max(current, 1) * _WORD_SCALES[t.word]
                    if _WORD_SCALES[t.word] >= 1000:
                        total, current = total + current, 0
                else:
                    current += _WORD_UNITS[t.word]
            span = text[run[0].start : run[-1].end]
            out.append(Number(float(total + current), _unit(None, tok.word), run[0].start, run[-1].end, span))
            run = []
    return out


def numbers_in(text: str) -> list[Number]:
    """Every number in `text` in order: digits ("1,000", "5.0", "$5", "5 km", "50%"), or, when the
    text has none, number words."""
    found = [_number(m.group(1), m.group(2), m.group(3), m.start(), m.end()) for m in _NUMBER.finditer(text)]
    return found or _word_numbers(text)


def as_number(reference: str) -> Number | None:
    """The reference as a number when it is one and nothing else ("1,000", "5 km", "$3", "five")."""
    m = _NUMBER_ONLY.match(reference)
    if m:
        return _number(m.group(1), m.group(2), m.group(3), 0, len(reference))
    words = _word_numbers(reference)
    if len(words) == 1 and normalize(words[0].text) == normalize(reference):
        return words[0]
    return None


def same_number(a: Number, b: Number) -> bool:
    """Equal values (to 1e-6 relative), and equal units when both carry a known one."""
    if abs(a.value - b.value) > 1e-6 * max(1.0, abs(a.value), abs(b.value)):
        return False
    return a.unit is None or b.unit is None or a.unit == b.unit
