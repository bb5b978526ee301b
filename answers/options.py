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

The list after the last header is the question's options; without a header, the last of: a run
of bulleted lines or a line of inline bullets, a labelled sequence whose labels are bracketed
("(A)", "[a]", "1)") or capital letters ("A. x B. y"), three or more labels with a dot only ("1.
x", "i. x") from the start of a line. FLAN answers a labelled list with the label as printed
("(1).", "B).", "[a].", "II."): `reference_option` reads those, an option's text, or its name.
`LISTS_OPTIONS` is nearly the same test as one Rust-regex pattern, for `has_options` over a whole
column.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple

from answers.text import normalize

ROMAN = (
    "i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x", "xi", "xii", "xiii", "xiv", "xv",
    "xvi", "xvii", "xviii", "xix", "xx", "xxi", "xxii", "xxiii", "xxiv", "xxv", "xxvi",
)  # fmt: skip
_HEADER_WORDS = (
    r"options?(?:\s+are)?|choices|answer\s+choices|possible\s+answers|available\s+(?:choices|options)"
    r"|(?:choose|pick|select)(?:\s+your\s+answer)?\s+from(?:\s+the\s+following)?|opt"
)
_HEADER = re.compile(rf"(?m)(?:^|(?<=[\s.?!]))(?:{_HEADER_WORDS})\s*(?::|\.(?=\s|$))")  # on lowercased text
_HEADER_KEYS = ("opt", "choice", "answers", "choose", "pick", "select")  # one of them is in every header
_DOT_LABEL_LINE = re.compile(r"\n[ \t]*([1aiI])[.:][ \t]")  # a line that starts "1. ", "a. ", "i. "
_BULLET_LINE = re.compile(r"\n[ \t]*(?:--?|\+|\*|•|\[[-+]\])[ \t]*\S")
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
_CAPITAL = re.compile(r"(?<=[a-z])(?=[A-Z][a-z])|\s+(?=[A-Z])")  # "locationWould", " Would"
_ABBREVIATION_END = re.compile(r"(?:\b(?:St|Mr|Mrs|Ms|Dr|Mt|Ft|Sen|Gov|Gen|Rep|Jr|Sr|Prof|Rev|vs)|\b[A-Z])$")
# nearly the same test as parse_options finding a list, for a whole polars column (Rust regex
# syntax, no look-around): a header and a first item, two bulleted lines, a line of two or more
# bullets, or two labels in order ("(A) x (B)", "a) x b)", "A. x B.", "1. x 2. x 3." on a line)
_B = r"(?:--?|\+|\*|•|\[[-+]\])"
_V1, _V2 = r"(?:[aA1]|i|I)", r"(?:[bB2]|ii|II)"
LISTS_OPTIONS = "|".join(
    (
        rf"(?im:(?:^|[\s.?!])(?:{_HEADER_WORDS})\s*(?::|\.(?:\s|$))\s*(?:{_B}\s*\S"
        r"|[(\[]?(?:[a-z]|\d{1,2}|[ivx]{1,5})[)\]]?[.:]?\s))",
        rf"(?m:^[ \t]*{_B}[ \t]*\S[^\n]*\n[ \t]*{_B}[ \t]*\S)",
        rf"(?m:^[ \t]*{_B}[ \t]*\S[^\n]*?\s{_B}[ \t]*\S)",
        rf"(?s:(?:^|\s)[(\[]{_V1}[)\]][.:]?\s.*?\s[(\[]{_V2}[)\]][.:]?(?:\s|$))",
        rf"(?s:(?:^|\s){_V1}\)[.:]?\s.*?\s{_V2}\)[.:]?(?:\s|$))",
        r"(?s:(?:^|\s)A[.:]\s.*?\sB[.:](?:\s|$))",
        r"(?s:\n[ \t]*(?:1|a|i|I)[.:][ \t].*?\s(?:2|b|ii|II)[.:]\s.*?\s(?:3|c|iii|III)[.:](?:\s|$))",
    )
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


class _Label(NamedTuple):
    start: int
    end: int
    opening: str
    value: str
    closing: str
    dot: str


def _label_at(text: str, start: int) -> _Label | None:
    """A label ("(A)", "a).", "[1].", "II.") at `start`, between white space (or the text's ends)."""
    m = _LABEL.match(text, start)
    if m is None or not _shape_ok(m.group(1), m.group(3), m.group(4)):
        return None
    return _Label(m.start(), m.end(), *m.group(1, 2, 3, 4))


def _bracket_labels(text: str) -> list[_Label]:
    """Labels that end in ")" or "]" ("(A)", "a).", "[1]."), found with str.find (fast)."""
    out = []
    for close in ")]":
        p = text.find(close)
        while p >= 0:
            j = p
            while j > 0 and p - j < 5 and text[j - 1].isalnum():
                j -= 1
            k = j - 1 if j > 0 and text[j - 1] in "([" else j
            label = _label_at(text, k) if j < p else None
            if label is not None and label.closing == close:
                out.append(label)
            p = text.find(close, p + 1)
    return out


def _capital_dot_labels(text: str) -> list[_Label]:
    """Capital letters as labels "A. x B. y" (and "A: x")."""
    out = []
    for marker in ("A.", "A:"):
        p = text.find(marker)
        while p >= 0:
            label = _label_at(text, p)
            if label is not None:
                out.append(label)
            p = text.find(marker, p + 1)
    return out


def _chain(text: str, first: _Label) -> list[_Label] | None:
    """The labels that follow `first` in order and in its shape ("(A)", "(B)", ...), two or more."""
    seq = _sequence(first.value)
    if seq is None:
        return None
    chain = [first]
    while len(chain) < len(seq):
        marker = f"{first.opening}{seq[len(chain)]}{first.closing}{first.dot}"
        p = text.find(marker, chain[-1].end)
        while p >= 0:
            label = _label_at(text, p)
            if label is not None and label.end == p + len(marker):
                break
            p = text.find(marker, p + 1)
        if p < 0 or label is None:
            break
        chain.append(label)
    return chain if len(chain) >= 2 else None


def _labelled(text: str, start: int, anchored: bool) -> tuple[int, list[str], list[str]] | None:
    """A labelled sequence in `text`: (its start, values, item texts), two or more items whose
    labels have one shape and follow in order. `anchored`: the first label is at `start`; else
    the last such sequence, bracketed ("(A)", "[a]", "1)") or capital letters ("A. x B. y"), or of
    three or more labels with a dot only ("1. x", "i. x") starting a line."""
    if anchored:
        first = _label_at(text, start)
        return _items(text, _chain(text, first) if first is not None else None)
    firsts = _bracket_labels(text) + _capital_dot_labels(text)
    firsts += [x for m in _DOT_LABEL_LINE.finditer(text) if (x := _label_at(text, m.start(1)))]
    for first in sorted(firsts, reverse=True):
        if first.value in ("A", "a", "1", "I", "i"):
            chain = _chain(text, first)
            if chain and (first.opening or first.closing or first.value == "A" or len(chain) >= 3):
                return _items(text, chain)
    return None


def _items(text: str, chain: list[_Label] | None) -> tuple[int, list[str], list[str]] | None:
    """(start, values, item texts) of a chain of labels; the last item ends with its line."""
    if not chain:
        return None
    items = [text[a.end : b.start] for a, b in itertools.pairwise(chain)]
    line_end = text.find("\n", chain[-1].end + 1)
    items.append(text[chain[-1].end : line_end if line_end >= 0 else len(text)])
    return chain[0].start, [x.value for x in chain], items


def _shape_ok(opening: str, closing: str, dot: str) -> bool:
    """ "(A)", "[a].", "A)", "1)." and "A." are labels; "A" and "(A" are not."""
    if opening:
        return closing == ("]" if opening == "[" else ")")
    return closing == ")" or (not closing and bool(dot))


def _bulleted(body: str) -> list[str] | None:
    """A bulleted list at the start of `body`: inline on its first line ("OPTIONS: - a - b"), or
    on lines of their own."""
    inline = _inline_bullets(body)
    if inline:
        return inline
    runs = _line_runs(body.lstrip())
    return runs[0][1] if runs and runs[0][0] == 0 else None


def _inline_bullets(text: str) -> list[str] | None:
    """Two or more items of one bullet on the first line of `text` ("- yes - no", "*a; *b;")."""
    head = text.lstrip(" \t")
    m = _BULLET.match(head)
    if m is None:
        return None
    line = head.split("\n", 1)[0]
    inline = [x for x in re.split(rf"(?:^|\s+){re.escape(m.group(1))}(?=\s*\S)", line) if x.strip()]
    return inline if len(inline) >= 2 else None


def _line_runs(text: str) -> list[tuple[int, list[str]]]:
    """Runs of two or more consecutive lines with one bullet, or one line of inline bullets:
    (where the run starts in `text`, items)."""
    runs: list[tuple[int, list[str]]] = []
    run: list[str] = []
    bullet = None
    start = pos = 0
    for line in [*text.split("\n"), ""]:
        m = _LINE_BULLET.match(line)
        if m is not None and (not run or m.group(1) == bullet):
            if not run:
                start = pos
            bullet = m.group(1)
            run.append(m.group(2))
        else:
            if len(run) >= 2:
                runs.append((start, run))
            elif len(run) == 1 and (inline := _inline_bullets(text[start:])):
                runs.append((start, inline))
            run, bullet, start = ([m.group(2)], m.group(1), pos) if m is not None else ([], None, pos)
        pos += len(line) + 1
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
    cut = _appended(last, max((len(x.split()) for x in head), default=0))
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


def _appended(last: str, words: int) -> int | None:
    """Where template text appended to the last option starts, when the item ends with . : ? or
    !: an instruction ("Let's think first.", "Hmmm, let me think.", "Chain of thought:"), or, in
    an item longer than the others' `words` + 4, the first word with a capital that leaves at most
    `words` + 2 ("location Would the answer ...?", "locationWould ...")."""
    if not last.rstrip().endswith((".", ":", "?", "!")):
        return None
    m = _APPENDED.search(last)
    if m:
        return m.start()
    if len(last.split()) > words + 4:
        for m in _CAPITAL.finditer(last):
            if len(last[: m.start()].split()) <= words + 2:
                return m.start()
            break
    return None


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


def _last_header(question: str) -> int | None:
    """Where the last option header ("Options:", "Choose from:" ...) ends, if any."""
    low = question.lower()
    best: tuple[int, int] | None = None
    for key in _HEADER_KEYS:
        p = low.rfind(key)
        while p >= 0 and (best is None or p > best[0]):
            m = _HEADER.search(low, max(0, p - 12), p + 40)
            if m is not None and m.start() <= p < m.end():
                best = (m.start(), m.end())
                break
            p = low.rfind(key, 0, p)
    return best[1] if best else None


@lru_cache(maxsize=8192)
def parse_options(question: str) -> Options | None:
    """The answer options listed in a question (see the module docstring), or None."""
    end = _last_header(question)
    if end is not None:
        body = question[end:]
        bulleted = _bulleted(body)
        if bulleted:
            return _options([], bulleted)
        found = _labelled(question, end + len(body) - len(body.lstrip()), anchored=True)
        if found:
            return _options(found[1], found[2])
    found = _labelled(question, 0, anchored=False)
    runs = _line_runs(question) if _BULLET_LINE.search(question) or _LINE_BULLET.match(question) else []
    if runs and (found is None or found[0] < runs[-1][0]):
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
