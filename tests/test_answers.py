"""The answer checker against hand-labelled FLAN-shaped cases, and extraction edge cases."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from answers.check import KINDS, VERDICTS, Check, answer_kind, check_answer, check_frame
from answers.choice import Choices, read_choice
from answers.extract import read_number, reference_answer
from answers.text import as_number, numbers_in, same_number

GOLDEN = Path(__file__).parent / "data" / "answers" / "golden.jsonl"


def _golden() -> list[dict]:
    return [json.loads(line) for line in GOLDEN.read_text(encoding="utf-8").splitlines() if line.strip()]


def _confusion(rows: list[tuple[dict, Check]]) -> str:
    """Hand label (rows) x checker verdict (columns), per kind."""
    lines = []
    for kind in KINDS:
        counts = Counter((case["verdict"], got.verdict) for case, got in rows if case["kind"] == kind)
        lines.append(f"{kind} (n={sum(counts.values())})")
        lines.append("  " + "label / checker".ljust(16) + "".join(f"{v:>14}" for v in VERDICTS))
        for label in VERDICTS:
            lines.append(f"  {label:<16}" + "".join(f"{counts[(label, v)]:>14}" for v in VERDICTS))
    return "\n".join(lines)


def test_golden_file_is_well_formed() -> None:
    cases = _golden()
    assert len(cases) >= 150
    for case in cases:
        assert set(case) == {"question", "reference", "has_options", "response", "kind", "verdict"}, case
        assert case["kind"] in KINDS and case["verdict"] in VERDICTS, case
        assert case["kind"] != "open" or case["verdict"] == "unverifiable", case
    verdicts = Counter(c["verdict"] for c in cases)
    assert verdicts["wrong"] / len(cases) >= 0.35


def test_checker_agrees_with_the_hand_labels() -> None:
    cases = _golden()
    rows = [(c, check_answer(c["question"], c["reference"], c["response"], c["has_options"])) for c in cases]
    closed = [(c, got) for c, got in rows if c["kind"] != "open"]
    agree = sum(c["verdict"] == got.verdict for c, got in closed)
    kinds = sum(c["kind"] == got.kind for c, got in rows)
    print(f"\n{_confusion(rows)}")
    print(f"verdict agreement on closed cases: {agree}/{len(closed)} = {agree / len(closed):.1%}")
    print(f"kind agreement: {kinds}/{len(rows)} = {kinds / len(rows):.1%}")
    for c, got in closed:
        if c["verdict"] != got.verdict:
            print(
                f"DISAGREE label={c['verdict']} checker={got.verdict} ({got.extracted!r}): {c['response']!r}"
            )
    assert kinds == len(rows), [(c["question"][:60], got.kind) for c, got in rows if c["kind"] != got.kind]
    assert agree / len(closed) >= 0.98


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("So the answer is (B).", 1),
        ("(A) is wrong. (C) is wrong too. The answer is (B).", 1),
        ("At first the answer is (A). On reflection, the answer is (C).", 2),
        ("The answer is (B), not (A).", 1),
        ("The answer is B because the brick is heavier.", 1),
        ("The answer is A man.", None),  # "A" the article, not the option
        ("It is a stone, rather than a feather or a brick.", 2),
        ("No idea, sorry.", None),
    ],
)
def test_choice_extraction(response: str, expected: int | None) -> None:
    reading = read_choice(response, Choices.of(["a feather", "a brick", "a stone"], 3))
    assert (reading.index if reading else None) == expected


@pytest.mark.parametrize(
    "response",
    [
        "The answer is (A) or (B).",
        "Both (A) and (B) could be right.",
        "Answer: A/B",
        "It might be a feather, or a brick.",
    ],
)
def test_a_hedge_is_no_choice(response: str) -> None:
    reading = read_choice(response, Choices.of(["a feather", "a brick", "a stone"], 3))
    assert reading is not None and reading.index is None and set(reading.hedged) == {0, 1}


def test_no_as_a_determiner_is_not_an_answer() -> None:
    yes_no = Choices.of(["yes", "no"])
    assert read_choice("There is no doubt the river is the longest. So, yes.", yes_no).index == 0
    assert read_choice("Yes, there is no evidence against it.", yes_no).index == 0
    assert read_choice("No, the man is asleep.", yes_no).index == 1
    assert read_choice("The answer is no because he sleeps.", yes_no).index == 1


def test_numbers() -> None:
    assert [n.value for n in numbers_in("It cost $1,250,000.50 or 3 km; -4 and 2.0.")] == [
        1250000.5,
        3,
        -4,
        2,
    ]
    assert [n.value for n in numbers_in("twenty-five and one hundred")] == [25, 100]
    assert same_number(as_number("1,000"), as_number("1000.0"))
    assert same_number(as_number("5 km"), as_number("5"))
    assert not same_number(as_number("5 km"), as_number("5 m"))
    assert same_number(as_number("$5"), as_number("5 dollars"))
    assert same_number(as_number("five"), as_number("5"))
    assert as_number("5 apples and 3 pears") is None and as_number("Paris") is None
    got, hedged = read_number("Adding them gives 30. The final answer: 1,000")
    assert got is not None and got.value == 1000 and not hedged
    assert read_number("The answer is 12 or 13.")[1]


def test_kinds() -> None:
    assert answer_kind("Is it?\nOPTIONS:\n- yes\n- no", "yes", True) == "multiple_choice"
    assert answer_kind("Pick: (A) red (B) blue", "(B)", False) == "multiple_choice"
    assert (
        answer_kind("Is it?\nOPTIONS:\n- yes\n- no", "maybe so", True) == "closed"
    )  # reference names no option
    assert answer_kind("Who wrote Hamlet?", "William Shakespeare", False) == "closed"
    assert answer_kind("Translate to German: I love apples.", "Ich liebe Äpfel.", False) == "open"
    assert (
        answer_kind("Why is the sky blue?", "Because air scatters blue light more than red light.", False)
        == "open"
    )
    assert check_answer("Who?", "Shakespeare", "", False) == Check(
        "closed", "unverifiable", None, "shakespeare"
    )


def test_explained_references_are_read_for_their_answer() -> None:
    gsm = "Answer step by step. A baker makes 24 muffins and sells 18. How many are left?"
    ref = "24 - 18 = 6 muffins are left. The answer is 6."
    assert reference_answer(ref) == "6" and reference_answer("  Paris. ") == "Paris."
    assert check_answer(gsm, ref, "So 6 are left.", False) == Check("closed", "correct", "6", "6")
    qasc = "Which organ pumps blood?\n(A) the kidneys\n(B) the heart\nLet's think step by step."
    got = check_answer(
        qasc, "It contracts to push blood. Therefore the answer is (B) the heart.", "(A)", True
    )
    assert got == Check("multiple_choice", "wrong", "the kidneys", "the heart")


def test_answer_first_numbered_options_and_out_of() -> None:
    stars = Choices.of(["1 star", "2 stars", "3 stars", "4 stars", "5 stars"], 5)
    assert read_choice("I'd give it 4 out of 5 stars.", stars).index == 3
    assert read_choice("The answer is: Option 2.", stars).index == 1
    assert (
        read_choice("(C)\n\nThe heart pumps; (A) and (B) do not.", Choices.of(["x", "y", "z"], 3)).index == 2
    )
    assert read_number("366 days.\n\nFebruary has 29 days instead of 28.")[0].value == 366


def test_a_partial_span_is_unverifiable_and_a_different_one_wrong() -> None:
    q = "Who wrote the novel 1984?"
    assert check_answer(q, "George Orwell", "It was Orwell.", False).verdict == "unverifiable"
    assert check_answer(q, "George Orwell", "It was written by Aldous Huxley.", False).verdict == "wrong"
    assert check_answer(q, "George Orwell", "It is not George Orwell.", False).verdict == "wrong"
    assert check_answer(q, "George Orwell", "George Orwell or Huxley.", False).verdict == "wrong"


def test_check_frame_keeps_height_order_and_types() -> None:
    cases = _golden()
    df = pl.DataFrame(
        {k: [c[k] for c in cases] for k in ("question", "reference", "response", "has_options")},
        schema={
            "question": pl.String,
            "reference": pl.String,
            "response": pl.String,
            "has_options": pl.Boolean,
        },
    )
    out = check_frame(df)
    assert out.height == df.height and out.columns == [
        "answer_kind",
        "answer_check",
        "extracted_answer",
        "answer_reference",
    ]
    assert all(dtype == pl.String for dtype in out.dtypes)
    assert out["answer_check"].to_list() == [
        check_answer(c["question"], c["reference"], c["response"], c["has_options"]).verdict for c in cases
    ]
    assert check_frame(df.clear()).height == 0


def test_a_reference_of_articles_only_is_unverifiable() -> None:
    # real NIV2 task039 (qasc overlapping words) has targets "A.", "a", "an.": empty once normalised
    q = (
        "Definition: Generate an overlapping word between the given two sentences.\n"
        "input: Sentence1: A seed is the first stage of a plant. \n"
        "Sentence2: Plants grow from a seed.\noutput:"
    )
    for reference in ("A.", "a", "an."):
        for response in ("a", "The overlapping word is seed.", ""):
            assert check_answer(q, reference, response, False).verdict == "unverifiable"


def test_a_row_the_rules_fail_on_is_unverifiable_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    """One row the checker raises on becomes `unverifiable`; the other rows are checked as usual."""
    import answers.check as check

    real = check.check_answer

    def failing(question: str, reference: str, response: str, has_options: bool) -> Check:
        if response == "boom":
            raise ValueError("max() arg is an empty sequence")
        return real(question, reference, response, has_options)

    monkeypatch.setattr(check, "check_answer", failing)
    df = pl.DataFrame(
        {
            "question": ["What is 2 + 3?", "What is 2 + 3?"],
            "reference": ["5", "5"],
            "response": ["boom", "2 + 3 = 5. So the answer is 5."],
            "has_options": [False, False],
        }
    )
    out = check_frame(df)
    assert out["answer_check"].to_list() == ["unverifiable", "correct"]
    assert out["answer_kind"].to_list() == ["closed", "closed"]
