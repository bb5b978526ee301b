"""Which option (or label) an explained response commits to.

An option is named by its text ("the heart"), its name ("Sentence B") or its label as the question
prints it or in brackets ("(B)", "B)", "B.", "[b].", "(2).", "2)", "II.", "option 2"); a capital
letter names a bulleted list's options by position. The final answer wins: the first thing named
right after the last answer cue (`answers.extract.cue_spans`); a last cue that commits to something
that is no option ("So the answer is pleasure.") is an answer of its own, which option words
inside the reasoning do not override; failing a cue, a short first line ("No.\\n\\n..."), then the
concluding sentences, last first. "At first I thought (A)... so the answer is (B)" reads (B). An
option named with a negation ("not (A)", "rather than yes") or rejected ("(A) is wrong") does not
count; a commitment that names two different options joined by "or"/"and"/"/", or with a hedge
word ("could", "might", "either", "maybe", "both"), is a hedge.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple

from answers.extract import ASIDE, cues, first_line, sentences
from answers.options import Options
from answers.text import ARTICLES, Token, clean, tokenize

_CLAUSE = re.compile(r"[,;:]|\b(?:so|therefore|thus|hence|which\s+means|meaning|because|since)\b", re.I)
_LETTERS = (
    re.compile(r"[(\[]([A-Z])[)\]]"),
    re.compile(r"(?<![\w(])([A-Z])\)"),
    re.compile(r"(?:^|(?<=\s))([A-Z])[.:](?=\s|$)"),
    re.compile(r"(?i:\b(?:option|choice|letter))\s*\(?([A-Z])\b"),
    re.compile(r"^\s*\(?([A-Z])\)?\s*[.!]?\s*$"),
    re.compile(r"(?<![\w/])\(?([A-Z])\)?(?=\s*/\s*\(?[A-Z]\)?(?!\w))"),
    re.compile(r"(?<=/)\s*\(?([A-Z])\)?(?!\w)"),
    re.compile(r"[(\[]([a-z])[)\]]"),
    re.compile(r"(?<![\w(\[])([a-z])\)"),
)
_SMALL_LETTER_AFTER_CUE = re.compile(
    r"^\s*[(\[]?(?:([b-z])(?:[)\]]|[.:]?\s*$|[.:](?=\s))|(a)(?:[)\]]|[.:]\s*$))"
)
_LONE_CAPITAL = re.compile(r"(?<![\w'’])([A-Z])(?![\w'’])")
_NUMBERED = re.compile(r"(?i:\b(?:option|choice)\s*(?:#|no\.?|number)?\s*)([1-9]\d?)\b")
_LETTER_AFTER_CUE = re.compile(
    r"^\s*\(?(?:([B-HJ-Z])\b|([AI])(?:\)|[.:,/]?\s*$|[.:,/](?=\s|\(?[A-Z]\b)"
    r"|(?=\s+(?:because|since|as|which|for|-|–|—)\s)))"
)
# numbers and roman numerals as labels: "(2)", "[2].", "2)", "(ii)"; right after a cue also "2.", "II."
_LABEL_MENTION = re.compile(r"[(\[]([ivxIVX]{1,5}|\d{1,2})[)\]]|(?<![\w(\[.,$/-])([ivxIVX]{1,5}|\d{1,2})\)")
_LABEL_AFTER_CUE = re.compile(r"^\s*[(\[]?([ivxIVX]{1,5}|\d{1,2})(?:[)\]]|[)\]]?[.:]?(?=\s|$|[,;]))")
_OUT_OF = re.compile(r"\s+out\s+of\s+\d+\b", re.IGNORECASE)
_NEGATORS = frozenset(
    {"not", "never", "nor", "neither", "t", "cannot", "than", "unlike", "except", "nothing", "without"}
)
_OR = frozenset({"or", "and", "nor"}) | ARTICLES  # a piece cut before "a brick" keeps its "a"
_REJECTED = frozenset({"wrong", "incorrect", "eliminated", "excluded", "ruled"})
_CONNECTORS = (
    frozenset({"or", "and", "either", "maybe", "perhaps", "possibly", "also", "both", "option"}) | ARTICLES
)
_HEDGES = frozenset({"could", "might", "may", "either", "maybe", "perhaps", "possibly", "both", "unsure"})
# what follows a cue without committing to an answer: "not obvious", "easy to see", "one of
# them", "as follows", "unclear", "no idea", a clause ("that ...", "based on ..."); a few other
# words do commit, also such words alone or in other phrases ("easy", "not fat", "one head")
_ADJ = r"(?:clear|obvious|straightforward|simple|easy|evident|apparent|certain|sure|known|given|stated"
_ADJ += r"|mentioned|provided|listed|possible|determinable|available|hard|difficult|tricky|found|determined)"
_NO_COMMITMENT = re.compile(
    rf"(?:not\s+(?:(?:immediately|entirely|so|very|quite|yet|really)\s+)?(?:{_ADJ}|among|in|one|any|there|here)\b"
    rf"|{_ADJ}(?:\s*[:,;-]|\s+(?:to|from|in|by|when|if|because|since|as|now|here|there|below|above|that)\b)"
    r"|as\s+follows|(?:the\s+)?following\b|here\b|one\s+of\b|(?:un(?:clear|certain|known|sure|determined)"
    r"|ambiguous|impossible|indeterminate|sorry|idk|n/a|cannot|can\s*(?:not|'t|’t)"
    r"|no\s+(?:idea|clue|answer|way|single))\b"
    r"|(?:i|that|this|these|which|what|how|why|where|who|when|if|because|since|based)\s+\w)",
    re.IGNORECASE,
)
# a word before an option's text right after a cue that keeps it the answer ("is definitely (B)
# sex"); any other word makes it part of a longer answer ("the answer is opera house" for "house")
_ADJACENT = re.compile(r"\s+(?:(?:a|an|the)\s+)*", re.IGNORECASE)  # "such a nice home": one phrase
_LONE_ADJ = re.compile(rf"{_ADJ}\W*$", re.IGNORECASE)  # "The answer is simple." before the answer
_LEAD_OK = frozenset(
    {"is", "be", "it", "that", "this", "definitely", "clearly", "obviously", "probably", "likely",
     "most", "simply", "just", "indeed", "certainly", "surely", "option", "choice", "answer", "letter",
     "sentence", "statement", "in", "on", "at", "to", "of", "for", "by", "with", "from", "into", "so",
     "then", "yes", "no", "correct", "right", "best", "final", "therefore", "thus", "hence",
     "either", "both", "not", "rather", "than", "maybe", "perhaps", "possibly", "s", "would", "will",
     "should", "must", "could", "only", "also", "still", "called", "named", "known", "as", "because"}
)  # fmt: skip
COMMITMENT_MAX_WORDS = 8
BARE_MAX_WORDS = 4  # a response of this few words is read like the words after a cue


@dataclass(frozen=True)
class Choices:
    """The answers a closed question allows: per option the word sequences that name it (text,
    name), how many options capital letters A, B, ... name (0: none), and the options' number or
    roman labels ("1", "ii"; empty when none)."""

    words: tuple[tuple[tuple[str, ...], ...], ...]
    lettered: int
    labels: tuple[str, ...] = ()
    by_first: dict[str, tuple[tuple[tuple[str, ...], int], ...]] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        index: dict[str, list[tuple[tuple[str, ...], int]]] = {}
        for i, aliases in enumerate(self.words):
            for alias in dict.fromkeys(aliases):
                if alias:
                    index.setdefault(alias[0], []).append((alias, i))
        object.__setattr__(self, "by_first", {k: tuple(v) for k, v in index.items()})

    @classmethod
    def of(cls, texts: Sequence[str], lettered: int = 0) -> Choices:
        """Options named by their texts (and the first `lettered` by capital letters)."""
        return cls(tuple((_words(x),) for x in texts), lettered)

    @classmethod
    def from_options(cls, options: Options) -> Choices:
        """A question's options: named by text, name and label."""
        kind = options.label_kind
        words = tuple(
            tuple(a for a in (_words(text), _words(name or ""), _words(_after_name(text, name))) if a)
            for text, name in zip(options.texts, options.names or (None,) * len(options.texts), strict=True)
        )
        numbered = kind in ("digit", "roman")
        labels = tuple(x.lower() for x in options.letters) if numbered else ()
        return cls(words, 0 if numbered else len(options.texts), labels)


@lru_cache(maxsize=65536)
def _words(text: str) -> tuple[str, ...]:
    return tuple(t.word for t in tokenize(text))


@lru_cache(maxsize=4096)
def options_choices(options: Options) -> Choices:
    """`Choices.from_options`, cached: FLAN's option lists repeat across prompts."""
    return Choices.from_options(options)


def _after_name(text: str, name: str | None) -> str:
    return text.split(":", 1)[1].strip().strip('"') if name and ":" in text else ""


@dataclass(frozen=True)
class Reading:
    """What a response commits to: one option, a hedge between several, or (`other`) an answer
    that is none of them."""

    index: int | None
    hedged: tuple[int, ...] = ()
    other: str | None = None


class _Mention(NamedTuple):
    index: int
    start: int
    end: int


def _text_mentions(toks: list[Token], choices: Choices, span: str) -> list[_Mention]:
    """Option texts and names in a span, longest first where they overlap."""
    words = [t.word for t in toks]
    found: list[tuple[int, int, int]] = []  # (token start, token end, index)
    for j, w in enumerate(words):
        for alias, i in choices.by_first.get(w, ()):
            n = len(alias)
            if n == 1 or tuple(words[j : j + n]) == alias:
                found.append((j, j + n, i))
    taken: set[int] = set()
    out = []
    for j, k, i in sorted(found, key=lambda f: (f[0] - f[1], f[0])):
        if taken.isdisjoint(range(j, k)):
            if k - j == 1 and words[j] == "no" and not _standalone(toks, j, span):
                continue
            taken.update(range(j, k))
            out.append(_Mention(i, toks[j].start, toks[k - 1].end))
    return out


def _cue_texts(toks: list[Token], texts: list[_Mention], span: str) -> list[_Mention]:
    """After a cue, option texts that are the answer, not the end of a longer one ("opera house",
    "food and water" for "house", "water"): what comes before is nothing, punctuation ("spring,
    summer"), a label, a function word (`_LEAD_OK`), or "and"/"or" after another option ("bloody
    mess or cake" is a hedge)."""
    starts = [t.start for t in toks]
    ends = {m.end for m in texts}
    kept = []
    for m in texts:
        k = bisect.bisect_left(starts, m.start)
        if k == 0 or not _ADJACENT.fullmatch(span, toks[k - 1].end, m.start):
            kept.append(m)
            continue
        word = toks[k - 1].word
        after_option = word in ("and", "or", "nor") and k >= 2 and toks[k - 2].end in ends
        if len(word) < 2 or word.isdigit() or word in _LEAD_OK or after_option:
            kept.append(m)
    return kept


def _standalone(toks: list[Token], j: int, span: str) -> bool:
    """A "no" that is an answer ("No, ...", "... is no.") rather than a determiner ("no way")."""
    after = span[toks[j].end :].lstrip(" ")
    return j == 0 or not after or not after[0].isalnum()


def _label_mentions(span: str, choices: Choices, after_cue: bool) -> list[_Mention]:
    """Options named by a label: capital (or small) letters, numbers, roman numerals."""
    found = []
    if choices.lettered:
        for p in _LETTERS:
            for m in p.finditer(span):
                i = ord(m.group(1).upper()) - ord("A")
                if i < choices.lettered:
                    found.append(_Mention(i, m.start(1), m.end(1)))
        if after_cue:
            m = _LETTER_AFTER_CUE.match(span) or _SMALL_LETTER_AFTER_CUE.match(span)
            if m:
                g = 1 if m.group(1) else 2
                i = ord(m.group(g).upper()) - ord("A")
                if i < choices.lettered:
                    found.append(_Mention(i, m.start(g), m.end(g)))
    if choices.lettered or choices.labels[:1] == ("1",):
        n = choices.lettered or len(choices.labels)
        for m in _NUMBERED.finditer(span):
            i = int(m.group(1)) - 1
            if i < n:
                found.append(_Mention(i, m.start(1), m.end(1)))
    if choices.labels:
        marks = list(_LABEL_MENTION.finditer(span))
        after = _LABEL_AFTER_CUE.match(span) if after_cue else None
        for m in [*marks, after] if after else marks:
            g = 1 if m.group(1) else 2
            value = m.group(g).lower()
            if value in choices.labels:
                found.append(_Mention(choices.labels.index(value), m.start(g), m.end(g)))
    return found


def _mentions(span: str, choices: Choices, after_cue: bool) -> list[_Mention]:
    """The options a span names (text, name, label, "option 2"), negated and rejected ones left out."""
    span = _OUT_OF.sub(lambda m: " " * len(m.group()), span)  # "4 out of 5 stars" names "4 stars"
    toks = tokenize(span)
    texts = _text_mentions(toks, choices, span)
    if after_cue and texts:
        texts = _cue_texts(toks, texts, span)
    found = texts + _label_mentions(span, choices, after_cue)
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
            negated = between <= _OR
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
        asides = [(m.start(), m.end()) for m in ASIDE.finditer(span)]
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


def _commits(span: str, choices: Choices, more: bool) -> bool:
    """A cue's span that is an answer of its own: a few words that name no option (not even to
    reject it), not ending in ":" (it introduces what follows), not a non-answer
    (`_NO_COMMITMENT`: "not obvious", "as follows", "unclear", ...), and, when `more` text follows
    a prose cue ("The answer is simple. ..."), not a lone "simple" or "clear"."""
    toks = tokenize(span)
    if not 0 < len(toks) <= COMMITMENT_MAX_WORDS or span.rstrip().endswith(":"):
        return False
    bare = span.lstrip(" ('\"“")
    if _NO_COMMITMENT.match(bare) or (more and _LONE_ADJ.match(bare)):
        return False
    texts = _cue_texts(toks, _text_mentions(toks, choices, span), span)
    return not (texts or _label_mentions(span, choices, after_cue=True))


def read_choice(response: str, choices: Choices) -> Reading | None:
    """The option a response commits to (or hedges between, or an answer that is none of them),
    None when it names none."""
    text = clean(response)
    for k, (cue, end, span) in enumerate(cues(text)):
        found = _decide(span, choices, after_cue=True)
        if found:
            return found
        later = text[end + len(span) :]
        if k == 0:
            if _commits(span, choices, more=bool(later.strip()) and ":" not in text[cue:end]):
                return Reading(None, other=span)
            for sent in sentences(later) if later.strip() else ():
                found = _decide(sent, choices, after_cue=False)
                if found:
                    return found
        elif _commits(span, choices, more=True):  # "Answer: cake. Explanation: ... her answer was ..."
            return Reading(None, other=span)
    first = first_line(text)
    bare = first is not None and first == text.strip()
    if bare and len(tokenize(first)) <= BARE_MAX_WORDS:  # a bare answer ("(B)", "opera house")
        found = _decide(first, choices, after_cue=True)
        if found:
            return found
        if _commits(first, choices, more=False):
            return Reading(None, other=first)
    if first:  # answer first ("No.\n\nThe premise ...")
        ms = _mentions(first, choices, after_cue=True)
        alone = (
            len(tokenize(first)) <= max((len(a) for a in choices.words[ms[0].index]), default=0) + 2
            if ms
            else False
        )
        if alone and len({m.index for m in ms}) == 1:
            return Reading(ms[0].index)
    for sent in sentences(text):
        found = _decide(sent, choices, after_cue=False)
        if found:
            return found
    if bare and _commits(first, choices, more=False):  # a one-line answer that is no option
        return Reading(None, other=first)
    return None


def sole_option(answer: str, choices: Choices) -> int | None:
    """The option a short answer names when it names one and no other ("(B) the heart", "the
    heart"); None for none or several ("A, C, D")."""
    named = {m.index for m in _mentions(clean(answer), choices, after_cue=True)}
    if len(named) != 1:
        return None
    if choices.lettered:  # "A, B, C, D": each letter names an option
        letters = {ord(x) - ord("A") for x in _LONE_CAPITAL.findall(answer)}
        if len(named | {i for i in letters if i < choices.lettered}) > 1:
            return None
    return named.pop()


def extract_choice(reply: str, options: Options) -> int | None:
    """The option a reply commits to, None for none, a hedge or another answer."""
    reading = read_choice(reply, options_choices(options))
    return reading.index if reading else None
