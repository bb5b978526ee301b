"""Answer options listed in a question, and which option a reference names.

FLAN v2 renders an option list (`templates.py`: OPT_START_STRING, OPT_ITEM_NAME and
OPT_ITEM_END candidates) as an optional header ("OPTIONS:", "Options:", "OPT:", "Possible
answers:", "Choose from:", "Pick your answer from:", "Select from the following." ...) and items on
lines of their own or inline, each a marker and the option, optionally ending in ";" or ".":
- bullets: "- x", "-x", "-- x", "+ x", "* x", "[-] x", "[+] x";
- labels in sequence: letters ("(A) x", "A) x", "(a). x", "a). x", "[a]. x", "A. x"), numbers
  ("(1). x", "1). x", "[1]. x", "1. x"), roman numerals ("I. x", "[i] x", "(iv). x").
A label at the start of bulleted items ("- (A) DNA") labels them; a name before a colon
('- Sentence A: "..."') names its option too. Text a template appends to the last option ("- no
Let's think first. ...", "+ location.Would the answer ...") is not part of it.

The list after the last header is the question's options; without a header, the last run of
bulleted lines, or the last labelled sequence whose labels are bracketed ("(A)", "[a]", "1)") or
capital letters ("A. x B. y"). FLAN answers a labelled list with the label as printed ("(1).",
"B).", "[a].", "II."): `reference_option` reads those, an option's text, or its name.
`LISTS_OPTIONS` is the same test as a Rust-regex pattern, for `has_options` over a whole column.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from functools import lru_cache

from answers.text import normalize

ROMAN = (
    "i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x", "xi", "xii", "xiii", "xiv", "xv",
    "xvi", "xvii", "xviii", "xix", "xx", "xxi", "xxii", "xxiii", "xxiv", "xxv", "xxvi",
)  # fmt: skip
_HEADER_WORDS = (
    r"options?(?:\s+are)?|choices|answer\s+choices|possible\s+answers|available\s+(?:choices|options)"
    r"|(?:choose|pick|select)(?:\s+your\s+answer)?\s+from(?:\s+the\s+following)?|opt"
)
_HEADER = re.compile(rf"(?im)(?:^|(?<=[\s.?!]))(?:{_HEADER_WORDS})\s*(?::|\.(?=\s|$))")
_BULLET = re.compile(r"(--?|\+|\*|•|\[[-+]\])(?=\s*\S)")
_LINE_BULLET = re.compile(r"(?m)^[ \t]*(--?|\+|\*|•|\[[-+]\])[ \t]*(\S.*)$")
# a label: "(A)", "(a).", "[1].", "A)", "a).", "II.", "1." (value, opening bracket, closing, dot)
_LABEL = re.compile(r"(?<!\S)([(\[]?)([ivxIVX]{1,5}|[A-Za-z]|\d{1,2})([)\]]?)([.:]?)(?=\s|$)")
_INNER_LABEL = re.compile(r"^([(\[]?)([ivxIVX]{1,5}|[A-Za-z]|\d{1,2})([)\]]?)([.:]?)\s+(?=\S)")
_NAME = re.compile(r"^([A-Z][a-z]+\s+(?:[A-Z]|\d{1,2}))\s*:\s*(\S.*)$", re.DOTALL)
_REFERENCE_LABEL = re.compile(
    r"^\s*([(\[]?)([ivxIVX]{1,5}|[A-Za-z]|\d{1,2})([)\]]?)([.:]?)\s*(.*?)\s*$", re.DOTALL
)
# what a template appends to the last option: an instruction or a prompt for the answer
_APPENDED = re.compile(
    r"\s+(?=(?:Let['’]s|Let\s+(?:me|us)|Hm+|OK\b|Ok\b|Okay|Think|Please|Step|Chain|Your|My|Reason|Explain"
    r"|Answer|Solution|Stream|Give|So\b|Now\b|First\b|Be\b|Show|Provide|Choose|Pick|Select|Output|Options?\b"
    r"|Justify|Rationale|Explanation|Detailed|Q:|A:|The\s+(?:thought|thinking|answer|reasoning|solution)))"
)
_ABBREVIATION_END = re.compile(r"(?:\b(?:St|Mr|Mrs|Ms|Dr|Mt|Ft|Sen|Gov|Gen|Rep|Jr|Sr|Prof|Rev|vs)|\b[A-Z])$")
# the same test as parse_options finding a list, for a polars column (Rust regex syntax)
LISTS_OPTIONS = (
    rf"(?im)(?:^|[\s.?!])(?:{_HEADER_WORDS})\s*(?::|\.\s)\s*(?:--?|\+|\*|•|\[[-+]\]|[(\[]?(?:a|1|i)[)\]]?[.:]?\s)"
    r"|^[ \t]*(?:--?|\+|\*|•)[ \t]*\S[^\n]*\n[ \t]*(?:--?|\+|\*|•)[ \t]*\S"
    r"|(?:^|\s)[(\[][aA1][)\]]\.?\s+\S[^\n]*?\s[(\[][bB2][)\]]\.?\s+\S"
    r"|(?:^|\s)[aA1]\)\.?\s+\S[^\n]*?\s[bB2]\)\.?\s+\S"
    r"|(?:^|\s)A[.:]\s+\S[^\n]*?\sB[.:]\s+\S"
)


@dataclass(frozen=True)
class Options:
    """Answer options parsed from a question: their texts, their labels in the question (as
    values "A", "a", "1", "ii"; empty for a bulleted list, whose options a reply may still name
    by position: "(B)" is the second) and their names ("Sentence A"; None where none)."""

    texts: tuple[str, ...]
    letters: tuple[str, ...]
    names: tuple[str | None, ...] = field(default=())

    @property
    def label_kind(self) -> str:
        """upper, lower, digit, roman or "" (no labels)."""
        return _KINDS[self.letters[0]] if self.letters else ""

    def index_of_letter(self, value: str) -> int | None:
        """The option a label value names, if any (letters and roman numerals in either case; a
        capital letter names a bulleted list's options by position)."""
        if self.letters:
            if self.label_kind == "digit":
                return self.letters.index(value) if value in self.letters else None
            keys = [x.lower() for x in self.letters]
            return keys.index(value.lower()) if value.lower() in keys else None
        if len(value) != 1 or not value.isalpha():
            return None
        i = ord(value.upper()) - ord("A")
        return i if 0 <= i < len(self.texts) else None


_KINDS = {"A": "upper", "a": "lower", "1": "digit", "I": "roman", "i": "roman"}


def _sequence(first: str) -> tuple[str, ...] | None:
    """The label values of a list whose first label is `first` (A, a, 1, I, i), else None."""
    if first == "1":
        return tuple(str(i) for i in range(1, 27))
    if first in ("A", "a"):
        return tuple(chr(ord(first) + i) for i in range(26))
    if first in ("I", "i"):
        return tuple(r.upper() if first == "I" else r for r in ROMAN)
    return None


def _labelled(text: str, start: int, anchored: bool) -> tuple[int, list[str], list[str]] | None:
    """A labelled sequence in `text` from `start`: (its start, values, item texts), two or more
    items whose labels have one shape and follow in order. `anchored`: the first label is at
    `start`; else the last such sequence, bracketed ("(A)", "[a]", "1)") or capital letters."""
    marks = [m for m in _LABEL.finditer(text, start) if _shape_ok(m.group(1), m.group(3), m.group(4))]
    if anchored and (not marks or text[start : marks[0].start()].strip()):
        return None
    where: dict[tuple[str, str, str, str], list[re.Match[str]]] = {}
    for m in marks:
        where.setdefault(m.group(1, 2, 3, 4), []).append(m)
    best = None
    for m in marks[:1] if anchored else marks:
        opening, value, closing, dot = m.group(1, 2, 3, 4)
        seq = _sequence(value)
        if seq is None or not (anchored or opening or closing or value == "A"):
            continue
        chain = [m]
        while len(chain) < len(seq):
            after = [
                x
                for x in where.get((opening, seq[len(chain)], closing, dot), ())
                if x.start() >= chain[-1].end()
            ]
            if not after:
                break
            chain.append(after[0])
        if len(chain) >= 2:
            items = [text[a.end() : b.start()] for a, b in itertools.pairwise(chain)]
            line_end = text.find("\n", chain[-1].end() + 1)
            items.append(text[chain[-1].end() : line_end if line_end >= 0 else len(text)])
            best = (m.start(), [x.group(2) for x in chain], items)
    return best


def _shape_ok(opening: str, closing: str, dot: str) -> bool:
    """ "(A)", "[a].", "A)", "1)." and "A." are labels; "A" and "(A" are not."""
    if opening:
        return closing == ("]" if opening == "[" else ")")
    return closing == ")" or (not closing and bool(dot))


def _bulleted(body: str) -> list[str] | None:
    """A bulleted list at the start of `body`: inline on its first line ("OPTIONS: - a - b"), or
    on lines of their own."""
    head = body.lstrip(" \t")
    m = _BULLET.match(head)
    if m is not None:
        bullet = re.escape(m.group(1))
        line = head.split("\n", 1)[0]
        inline = [x for x in re.split(rf"(?:^|\s+){bullet}(?=\s*\S)", line) if x.strip()]
        if len(inline) >= 2:
            return inline
    run = _line_runs(body.lstrip())
    return run[0][1] if run and run[0][0] == 0 else None


def _line_runs(text: str) -> list[tuple[int, list[str]]]:
    """Runs of two or more consecutive lines with one bullet: (first line's index, items)."""
    runs: list[tuple[int, list[str]]] = []
    run: list[str] = []
    bullet = None
    start = 0
    for k, line in enumerate([*text.split("\n"), ""]):
        m = _LINE_BULLET.match(line)
        if m is not None and (not run or m.group(1) == bullet):
            if not run:
                start = k
            bullet = m.group(1)
            run.append(m.group(2))
            continue
        if len(run) >= 2:
            runs.append((start, run))
        run, bullet, start = ([m.group(2)], m.group(1), k) if m is not None else ([], None, k)
    return runs


def _clean_items(items: list[str]) -> list[str]:
    """Items without their end string (";" or "."), and the last without appended template text."""
    items = [x.strip() for x in items]
    *head, last = items
    for end in (";", "."):
        if head and all(x.endswith(end) for x in head):
            head = [x[: -len(end)].rstrip() for x in head]
            cut = _first_end(last, end)
            last = last[:cut].rstrip() if cut is not None else last
            break
    cut = _appended(last)
    if cut:
        last = last[:cut].rstrip()
    return [*head, last.rstrip(";").strip()]


def _first_end(text: str, end: str) -> int | None:
    """Where an item's end string is: followed by space, the end or a capital letter, and not an
    abbreviation's period ("St. Louis", "3.5")."""
    for m in re.finditer(re.escape(end), text):
        after = text[m.end() : m.end() + 1]
        if after and not (after.isspace() or after.isupper()):
            continue
        if end == "." and _ABBREVIATION_END.search(text, 0, m.start()):
            continue
        return m.start()
    return None


def _appended(last: str) -> int | None:
    """Where template text appended to the last option starts: an instruction ("Let's think
    first.", "Hmmm, let me think.", "Chain of thought:") that ends the item with . : ? or !."""
    if not last.rstrip().endswith((".", ":", "?", "!")):
        return None
    m = _APPENDED.search(last)
    return m.start() if m else None


def _split_labels(items: list[str]) -> tuple[list[str], list[str]]:
    """Labels at the start of bulleted items ("(A) DNA"), when every item has one, in order."""
    found = [_INNER_LABEL.match(x) for x in items]
    if not all(found):
        return [], items
    values = [m.group(2) for m in found if m]
    seq = _sequence(values[0])
    shape = found[0].group(1, 3, 4) if found[0] else ("", "", "")
    if seq is None or tuple(values) != seq[: len(values)] or not _shape_ok(*shape):
        return [], items
    return values, [x[m.end() :] for x, m in zip(items, found, strict=True) if m]


def _names(items: list[str]) -> list[str | None]:
    """'Sentence A: "..."' names its option "Sentence A" when every item is named so."""
    found = [_NAME.match(x) for x in items]
    return [m.group(1) for m in found if m] if all(found) else [None] * len(items)


def _options(values: list[str], items: list[str]) -> Options | None:
    items = _clean_items(items)
    if not values:
        values, items = _split_labels(items)
    if len(items) < 2 or not all(items):
        return None
    return Options(texts=tuple(items), letters=tuple(values), names=tuple(_names(items)))


@lru_cache(maxsize=8192)
def parse_options(question: str) -> Options | None:
    """The answer options listed in a question (see the module docstring), or None."""
    headers = list(_HEADER.finditer(question))
    if headers:
        end = headers[-1].end()
        body = question[end:]
        bulleted = _bulleted(body)
        if bulleted:
            return _options([], bulleted)
        found = _labelled(question, end + len(body) - len(body.lstrip()), anchored=True)
        if found:
            return _options(found[1], found[2])
    found = _labelled(question, 0, anchored=False)
    runs = _line_runs(question)
    if runs and (found is None or question.count("\n", 0, found[0]) < runs[-1][0]):
        return _options([], runs[-1][1])
    return _options(found[1], found[2]) if found else None


def reference_option(reference: str, options: Options) -> int | None:
    """The option a FLAN reference names: its text, its name ("Sentence A") or its label ("(B)",
    "B", "(1).", "[a].", "II.", "B) a brick")."""
    ref = normalize(reference)
    for i, text in enumerate(options.texts):
        if ref and normalize(text) == ref:
            return i
    for i, name in enumerate(options.names):
        if name and ref == normalize(name):
            return i
    m = _REFERENCE_LABEL.match(reference)
    if m is None:
        return None
    opening, value, closing, dot, rest = m.groups()
    if (opening and not _shape_ok(opening, closing, dot)) or (closing == "]" and not opening):
        return None
    if not (opening or closing or dot) and (value.isdigit() or value == "a"):
        return None  # "2", "a": a number or an article, not a label
    if not options.letters and not (value.isupper() and len(value) == 1):
        return None
    i = options.index_of_letter(value)
    if i is not None and (not rest or normalize(rest) == normalize(options.texts[i])):
        return i
    return None
