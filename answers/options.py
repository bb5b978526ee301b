"""Answer options listed in a question, and which option a reference names."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from answers.text import normalize

_OPTIONS_HEADER = re.compile(r"(?:^|\n)\s*options\s*:?\s*", re.IGNORECASE)
_DASH_OPTION = re.compile(r"^\s*-\s+(.+?)\s*$", re.MULTILINE)
_LETTERED = re.compile(r"(?:^|\s)\(?([A-Z])[\).:]\s+(.+?)(?=\s+\(?[A-Z][\).:]\s|\n|$)")
_LETTER_REFERENCE = re.compile(r"^\s*\(?([A-Za-z])\s?\)?[.:]?\s*(.*?)\s*$", re.DOTALL)


@dataclass(frozen=True)
class Options:
    """Answer options parsed from a question; `letters` is empty for unlettered (dash) lists,
    whose options a reply may still name by position ("(B)" is the second)."""

    texts: tuple[str, ...]
    letters: tuple[str, ...]

    def index_of_letter(self, letter: str) -> int | None:
        """The option a letter names, if any."""
        letter = letter.upper()
        if self.letters:
            return self.letters.index(letter) if letter in self.letters else None
        i = ord(letter) - ord("A")
        return i if 0 <= i < len(self.texts) else None


@lru_cache(maxsize=4096)
def parse_options(question: str) -> Options | None:
    """The answer options listed in a question (FLAN's "OPTIONS:\\n- a\\n- b" lists, lettered
    "(A) x", "A) x", "A. x" lists), or None when none can be found."""
    headers = list(_OPTIONS_HEADER.finditer(question))
    header = headers[-1] if headers else None
    body = question[header.end() :] if header else question
    dashed = _DASH_OPTION.findall(body)
    if header and len(dashed) >= 2:
        return Options(texts=tuple(dashed), letters=())
    lettered = _LETTERED.findall(body)
    letters = [m[0] for m in lettered]
    if len(lettered) >= 2 and letters == [chr(ord("A") + i) for i in range(len(letters))]:
        return Options(texts=tuple(m[1].strip() for m in lettered), letters=tuple(letters))
    if len(dashed) >= 2:
        return Options(texts=tuple(dashed), letters=())
    return None


def reference_option(reference: str, options: Options) -> int | None:
    """The option a FLAN reference names: its text, or its letter ("(B)", "B", "B) a brick")."""
    ref = normalize(reference)
    for i, text in enumerate(options.texts):
        if ref and normalize(text) == ref:
            return i
    m = _LETTER_REFERENCE.match(reference)
    if m and (m.group(1).isupper() or (options.letters and not m.group(2))):
        i = options.index_of_letter(m.group(1))
        if i is not None and (not m.group(2) or normalize(m.group(2)) == normalize(options.texts[i])):
            return i
    return None
