"""What a prompt asks for, read from its instruction and its reference: a text to write (open) or an
answer to check.

The instruction is the first or the last line of the prompt that is not an option, with quoted
text left out (a quoted claim or question is the instance, not the instruction), its first and last
300 characters. It is `open` when it asks
- for a generation: translate, summarise, paraphrase, rephrase, rewrite, compose, write/generate/
  create a ..., a title or headline (`asks_for_generation`);
- for a question: "what was the question?", "... for what question?", "a question and answer
  pair", "come up with / imagine / reconstruct / write / ask ... a question ..." (FLAN's CoT
  inversions `cot_*_ii`, question generation);
- for the reasoning behind an answer it gives: "Explain simply why X is the correct answer",
  "explain how we arrive at this answer", "If the answer is 'X'; explain the reasoning", "What is
  the step-by-step reasoning process to arrive at the answer: X?", "What step-by-step reasoning
  justifies that answer?" (`asks_for_question_or_reasoning`);
or when its reference is a question ("The question is: ...?", "Q: ...?", or a short answer that
is one: "How long did they travel?").
"""

from __future__ import annotations

import re
from collections.abc import Iterator

_GENERATION = re.compile(
    r"\b(?:translat\w*|summar\w*|paraphras\w*|rephras\w*|rewrite\b|compose\b"
    r"|(?:a|good|best|suitable|short)\s+(?:title|headline)|(?:title|headline)\s+for"
    r"|(?:write|generate|create)\s+(?:a|an|the|one|two|some|short|new)\b)"
)
_GENERATION_KEYS = ("translat", "summar", "paraphras", "rephras", "rewrite", "compose", "title", "headline")
_GENERATION_KEYS += ("write", "generate", "create")
_REASONING = re.compile(
    r"\b(?:(?:what|which)\s+(?:was|is|were|could\s+be|might\s+have\s+been)\s+the\s+question(?:\?|\s+for\b)"
    r"|the\s+question\s+and\s+answer\s*:|for\s+what\s+question|question\s*(?:and|,|&)\s*answer\s+pair"
    r"|explain\s+(?:simply\s+)?why\s.{0,300}?\bis\s+the\s+(?:correct|right|best)\s+answer"
    r"|explain\s+how\s+we\s+arrive\s+at|answer\s+is\s+\S.{0,80}?;\s*explain\s+the\s+reasoning"
    r"|reasoning\s+(?:process\s+)?to\s+arrive\s+at\s+the\s+answer\s*:"
    r"|(?:reasoning|rationale|explanation)\s+(?:that\s+)?justif(?:y|ies)\s+(?:that|this|the)\s+answer"
    r"|justif(?:y|ies)\s+(?:that|this)\s+answer)"
)
_REASONING_KEYS = ("the question", "what question", "answer pair", "explain", "justif", "arrive at")
# what comes before "question" in "come up with a question", "provide a reasonable question"
_QUESTION_VERB = re.compile(
    r"\b(?:come\s+up\s+with|imagine|image|reconstruct|provide|write|generate|create|ask|formulate|compose"
    r"|construct|make\s+up|think\s+of|pose|suggest|propose)\s+(?:(?:a|an|the|one|some|new|reasonable"
    r"|relevant|possible|plausible|good|suitable|short|simple|creative|me|us|him|her|them)\s+){0,3}$"
)
_QUOTED = re.compile(r'"[^"\n]*"|“[^”\n]*”')
_OPTION_LINE = re.compile(r"^\s*(?:--?|\+|\*|\[[-+]\]|\(?[A-Za-z0-9]{1,3}[).\]])\s")
_QUESTION_REFERENCE = re.compile(r"^\s*(?:the\s+question\b|question\s*:|q\s*:)[^?]*\?", re.IGNORECASE)
_QUESTION = re.compile(
    r"^(?:what|which|who|whom|whose|when|where|why|how|is|are|was|were|do|does|did|can|could|will|would"
    r"|should|shall|has|have|had|may|might|must)\b[^?]*\?$",
    re.IGNORECASE,
)
INSTRUCTION_CHARS = 300


def instruction(question: str) -> tuple[str, ...]:
    """The lowercased first and last 300 characters of the first and the last line that are not
    options, quotes left out."""
    first = next(_lines(question, reverse=False), None)
    if first is None:
        return ()
    last = next(_lines(question, reverse=True))
    out = []
    for ln in (first,) if last == first else (first, last):
        n = INSTRUCTION_CHARS
        for part in (ln[:n], ln[-n:]) if len(ln) > n else (ln,):
            low = part.lower()
            out.append(_QUOTED.sub(" ", low) if '"' in low or "“" in low else low)
    return tuple(out)


def _lines(text: str, reverse: bool) -> Iterator[str]:
    """Non-empty lines that are not options, from the start or from the end."""
    end = len(text)
    start = 0
    while True:
        if reverse:
            cut = text.rfind("\n", 0, end)
            line, end = text[cut + 1 : end], cut
        else:
            cut = text.find("\n", start)
            line, start = text[start : cut if cut >= 0 else len(text)], cut + 1
        if line.strip() and not _OPTION_LINE.match(line):
            yield line
        if cut < 0:
            return


def asks_for_generation(lows: tuple[str, ...]) -> bool:
    """The instruction (`instruction`) asks for a generated text (translation, summary, title)."""
    return any(any(k in low for k in _GENERATION_KEYS) and _GENERATION.search(low) for low in lows)


def _asks_for_a_question(low: str) -> bool:
    i = low.find("question")
    while i >= 0:
        if _QUESTION_VERB.search(low, max(0, i - 60), i):
            return True
        i = low.find("question", i + 8)
    return False


def asks_for_question_or_reasoning(lows: tuple[str, ...]) -> bool:
    """The instruction (`instruction`) asks for a question, or for the reasoning behind an answer
    it gives."""
    for low in lows:
        if _asks_for_a_question(low) or (any(k in low for k in _REASONING_KEYS) and _REASONING.search(low)):
            return True
    return False


def reference_is_question(reference: str, answer: str) -> bool:
    """The reference is a question ("The question is: ...?", "Q: ...?") or its short answer is."""
    return bool(_QUESTION_REFERENCE.match(reference) or _QUESTION.match(answer))
