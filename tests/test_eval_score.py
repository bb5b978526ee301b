"""The evaluation scorer: normalized exact match and multiple-choice option extraction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from answers.choice import extract_choice
from answers.options import parse_options
from answers.score import accuracy_table, score_one
from answers.text import normalize
from train.evaluation import markdown_table

DATA = Path(__file__).parent / "data" / "train"
BBH = Path(__file__).parent / "data" / "bbh"  # the multiple-choice tasks of BIG-Bench Hard, 10+ rows each


def _cases() -> list[dict]:
    return [json.loads(line) for line in (DATA / "scorer_cases.jsonl").read_text().splitlines() if line]


def test_hand_written_case_gives_the_right_accuracy() -> None:
    rows = []
    for case in _cases():
        correct, method = score_one(case["question"], case["reference"], case["reply"], case["has_options"])
        assert correct == case["correct"], case
        assert method == ("option" if case["has_options"] else "exact_match")
        rows.append({"submix": case["submix"], "correct": correct})
    table = accuracy_table(rows)
    assert table["overall"] == {"n": 10, "correct": 7, "accuracy": 0.7}
    assert table["by_submix"] == {
        "cot": {"n": 3, "correct": 2, "accuracy": 0.6667},
        "flan2021": {"n": 3, "correct": 2, "accuracy": 0.6667},
        "niv2": {"n": 2, "correct": 1, "accuracy": 0.5},
        "t0": {"n": 2, "correct": 2, "accuracy": 1.0},
    }


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("(C)", 2),
        ("C)", 2),
        ("Answer: B", 1),
        ("the answer is a", None),
        ("I pick the brick.", 1),
        ("no idea", None),
    ],
)
def test_option_extraction_forms(reply: str, expected: int | None) -> None:
    options = parse_options("Pick one.\nOptions:\n(A) a feather\n(B) a brick\n(C) a stone")
    assert options is not None and options.texts == ("a feather", "a brick", "a stone")
    assert extract_choice(reply, options) == expected


def test_flan_dash_options_and_normalization() -> None:
    options = parse_options("Premise ...\nOPTIONS:\n- yes\n- it is not possible to tell\n- no")
    assert options is not None and options.letters == ()
    assert extract_choice("It is not possible to tell.", options) == 1
    assert normalize("  The  Sun!! ") == "sun"
    assert parse_options("What is two plus two?") is None


def test_every_bbh_multiple_choice_target_scores_as_its_own_answer() -> None:
    checked = 0
    paths = sorted(BBH.glob("*.json"))
    assert len(paths) == 17
    for path in paths:
        for ex in json.loads(path.read_text())["examples"]:
            # (one snarks example in the source is cut off after its first option)
            if ex["input"].count("\n(") < 2 or not ex["target"].startswith("("):
                continue
            options = parse_options(ex["input"])
            assert options is not None and options.letters[0] == "A", (path.name, ex["input"][-200:])
            assert score_one(ex["input"], ex["target"], f"So the answer is {ex['target']}.", True)[0]
            wrong = next(f"({x})" for x in options.letters if f"({x})" != ex["target"])
            assert not score_one(ex["input"], ex["target"], wrong, True)[0]
            checked += 1
    assert checked == 170  # 10 per task; the 4 examples stepped over are kept on purpose


def test_markdown_table_compares_models() -> None:
    base = accuracy_table([{"submix": "cot", "correct": False}, {"submix": "t0", "correct": True}])
    sft = accuracy_table([{"submix": "cot", "correct": True}, {"submix": "t0", "correct": True}])
    table = markdown_table({"base": base, "sft": sft})
    lines = table.splitlines()
    assert lines[0] == "| submix | n | base | sft | Δ (sft − base) |"
    assert "| cot | 1 | 0.0% | 100.0% | +100.0 pt |" in lines
    assert lines[-1] == "| **overall** | 2 | 50.0% | 100.0% | +50.0 pt |"
