"""Scoring student replies for `eval`: right or not, and accuracy per submix.

A reply is right when `answers.check` finds it correct; on open tasks, which the checker leaves
unverifiable, when the whole reply (or its first or last line) equals the reference once normalised.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from answers.check import check_answer
from answers.text import normalize


def exact_match(reply: str, reference: str) -> bool:
    """The reply, its first or its last line equals the reference, normalised."""
    ref = normalize(reference)
    lines = [ln for ln in reply.splitlines() if ln.strip()] or [""]
    return bool(ref) and any(normalize(c) == ref for c in (reply, lines[0], lines[-1]))


def score_one(question: str, reference: str, reply: str, has_options: bool) -> tuple[bool, str]:
    """(correct, method): method `option` for multiple choice, `exact_match` otherwise."""
    check = check_answer(question, reference, reply, has_options)
    if check.kind == "open":
        return exact_match(reply, reference), "exact_match"
    return check.verdict == "correct", "option" if check.kind == "multiple_choice" else "exact_match"


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
