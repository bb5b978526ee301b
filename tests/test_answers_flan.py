"""The answer checker on real FLAN rows (tests/data/answers/flan_dev.jsonl, niv1_dev.jsonl): the
control (the right answer passes, another row's answer of the task does not), FLAN's option
formats and labels, inversions, and the benchmark's tiny run."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from answers.check import check_answer
from answers.options import LISTS_OPTIONS, parse_options, reference_option
from benchmarks.answers import control_frame, control_table, load_rows, main, verdicts
from builders.prompts.buckets import has_options

DATA = Path(__file__).parent / "data" / "answers"
FLAN_TASKS = 13


@pytest.fixture(scope="module")
def flan() -> tuple[pl.DataFrame, pl.DataFrame]:
    control = control_frame(load_rows(DATA / "flan_dev.jsonl"))
    return control, verdicts(control)


def test_the_right_answer_passes_bare_and_explained(flan: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    control, v = flan
    assert control["task_name"].n_unique() == FLAN_TASKS and control.height >= 300
    checkable = v.filter(pl.col("kind") != "open")
    assert checkable["task_name"].n_unique() == 7  # six forward CoT tasks and TREC
    assert checkable.height >= 190
    for col in ("right", "right_explained"):
        bad = control.filter((v["kind"] != "open") & (v[col] != "correct"))
        assert bad.height == 0, bad.select("task_name", "question", col).rows()[:3]


def test_another_rows_answer_is_wrong_never_correct(flan: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    control, v = flan
    mask = (v["kind"] != "open") & control["other"].is_not_null()
    assert mask.sum() >= 190
    for col in ("other", "other_explained"):
        got = v.filter(mask)[col]
        passed = control.filter(mask & (v[col] == "correct"))
        assert passed.height == 0, passed.select("task_name", "reference", col).rows()[:3]
        assert (got == "wrong").mean() >= 0.95


def test_inversions_are_open_whatever_the_answer(flan: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    v = flan[1]
    inv = v.filter(pl.col("task_name").str.ends_with("_ii"))
    assert inv.height == 6 * 18  # every template of the six inversion tasks
    assert (inv["kind"] == "open").all()
    for col in ("right", "right_explained", "other", "other_explained"):
        assert not (inv[col] == "correct").any()


def test_every_option_of_a_question_is_read_as_itself(flan: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    """On each multiple-choice row: the gold option by its text is correct, every other option
    (by text, at the end of the row's own rationale) is wrong."""
    control, v = flan
    rows = control.filter(v["kind"] == "multiple_choice")
    assert rows.height >= 100
    for r in rows.iter_rows(named=True):
        options = parse_options(r["question"])
        assert options is not None
        gold = reference_option(r["answer"], options)
        assert gold is not None, (r["question"][-200:], r["answer"])
        for i, text in enumerate(options.texts):
            response = f"{r['rationale']} So the answer is {text}.".strip()
            got = check_answer(r["question"], r["reference"], response, True).verdict
            assert got == ("correct" if i == gold else "wrong"), (r["question"][-200:], text, got)


def test_niv1_rows_do_not_regress() -> None:
    """NIV2 targets (GPT-3's outputs, not gold) given back are correct on the checkable rows;
    question generation (task003) is open."""
    control = control_frame(load_rows(DATA / "niv1_dev.jsonl"))
    v = verdicts(control)
    table = control_table(v).filter(pl.col("task_name") == "all").row(0, named=True)
    assert table["checkable"] >= 18 and table["right_correct"] >= 0.95
    assert (v.filter(pl.col("task_name").str.starts_with("task003"))["kind"] == "open").all()


SENSE = (
    "Of the following two sentences, which one is against common sense?\nOptions:\n"
    '- Sentence A: "He poured orange juice on his cereal."\n- Sentence B: "He poured milk."\n'
)
R_SENSE = "Juice is not for cereal. Final answer: Sentence A."
CREAK = (
    "Is the claim above correct?\nOptions:\n- yes\n- no Let's think first. Step-by-step reasoning process:"
)
R_CREAK = "It is false. The final answer: no."
ECQA = "Where would you see a bloody mess?\nOptions:\n- pleasure\n- bloody mess\n- cake\nPlease explain."
R_ECQA = "A bloody mess is blood. The answer: bloody mess."
ARCH = ("Where is the arch?", "It is in Missouri. So the answer is St. Louis.")


@pytest.mark.parametrize(
    ("question", "reference", "response", "verdict"),
    [
        # option labels are never normalised away
        (SENSE, R_SENSE, "So the answer is Sentence A.", "correct"),
        (SENSE, R_SENSE, "So the answer is Sentence B.", "wrong"),
        (SENSE, R_SENSE, "Sentence B is against sense.", "wrong"),
        # text appended to the last option does not hide it
        (CREAK, R_CREAK, "It is not true, so the answer is no.", "correct"),
        (CREAK, R_CREAK, "The answer: yes.", "wrong"),
        # the final answer wins over option words in the reasoning
        (ECQA, R_ECQA, "Blood makes a bloody mess. So the answer is cake.", "wrong"),
        (ECQA, R_ECQA, "A bloody mess, I think. The answer is go home.", "wrong"),
        (ECQA, R_ECQA, "So the answer is opera mess.", "wrong"),
        (ECQA, R_ECQA, "Answer: bloody mess\nExplanation: no pleasure.", "correct"),
        (ECQA, R_ECQA, "The answer is not obvious. It is a bloody mess.", "correct"),
        (ECQA, R_ECQA, "cake and bloody mess", "wrong"),  # a bare answer read like one after a cue
        (ECQA, R_ECQA, "You would see it at a crime scene: a really bloody mess.", "correct"),
        # abbreviations keep their periods
        (*ARCH, "The answer is St. Louis. It is big.", "correct"),
        ("Who won in 2008?", "Sen. Barack Obama", "The answer is Sen. Barack Obama. He won.", "correct"),
        ("Who won in 2008?", "Sen. Barack Obama", "The answer is Sen. John McCain. He lost.", "wrong"),
    ],
)
def test_labels_appended_text_final_answers_abbreviations(
    question: str, reference: str, response: str, verdict: str
) -> None:
    assert check_answer(question, reference, response, False).verdict == verdict


@pytest.mark.parametrize(
    ("block", "reference", "other"),
    [
        ("OPTIONS:\n- description\n- entity\n- human", "entity", "human"),
        ("Options:\n- (A) description\n- (B) entity\n- (C) human", "(B)", "(C)"),
        ("Possible answers:\n(1). description;\n(2). entity;\n(3). human;", "(2).", "(3)."),
        ("Choose from:\n A). description\n B). entity\n C). human\n\nA:", "B).", "C)."),
        ("Pick from:\n[a]. description;\n[b]. entity;\n[c]. human;", "[b].", "[c]."),
        ("Select from: (a). description. (b). entity. (c). human.", "(b).", "(c)."),
        ("OPT: 1. description; 2. entity; 3. human;\nAnswer:", "2.", "3."),
        ("Available choices: I. description. II. entity. III. human.", "II.", "III."),
        ("Choose your answer from: +description; +entity; +human;", "entity", "human"),
        ("Pick your answer from:\n * description\n * entity\n * human", "entity", "human"),
        ("Choices:\n + description.\n + entity.\n + human.Would the answer be a human?\n", "entity", "human"),
        ("\n\n (a). description\n (b). entity\n (c). human", "(b).", "(c)."),
        ("\n\n i. description\n ii. entity\n iii. human", "ii.", "iii."),
    ],
)
def test_flan_option_formats_parse(block: str, reference: str, other: str) -> None:
    question = f'What type of thing is the question "Who wrote it?" asking about?\n\n{block}'
    options = parse_options(question)
    assert options is not None and options.texts == ("description", "entity", "human")
    assert reference_option(reference, options) == 1
    assert pl.Series([question]).str.contains(LISTS_OPTIONS).item()
    for right in (reference, f"So the answer is {reference}", "The answer is entity."):
        assert check_answer(question, reference, right, True).verdict == "correct", right
    for wrong in (other, f"So the answer is {other}", "The answer is human."):
        assert check_answer(question, reference, wrong, True).verdict == "wrong", wrong


@pytest.mark.parametrize(
    "question",
    [
        "Given the following reasoning and answer, what was the question? It is blue.\n The answer: yes",
        "Come up with a question and reasoning that would justify this answer: (G)",
        "Consider the question. Is it blue?\nOptions:\n- yes\n- no\n"
        " If the answer is 'yes'; explain the reasoning:",
        "Consider the question. Is it blue?\n If the answer is 'yes'; explain the reasoning:",
        "Question. Is it blue?\nAnswer. yes\nWhat step-by-step reasoning justifies that answer?",
        "Explain simply why Sentence A is the correct answer to: Which is odd? Explanation:",
        "It is blue.is the reasoning for what question and answer pair?",
        "Please ask me a question.",
    ],
)
def test_a_task_that_asks_for_a_question_or_reasoning_is_open(question: str) -> None:
    for reference in ("yes", "Sentence A", "The question is: Is it blue?\nStep-by-step: it is.", "(G)"):
        got = check_answer(question, reference, f"So the answer is {reference}", False)
        assert got.kind == "open" and got.verdict == "unverifiable"


def test_has_options_only_where_the_prompt_lists_options() -> None:
    rows = load_rows(DATA / "flan_dev.jsonl").with_columns(pl.lit("zs_opt").alias("template_type"))
    flags = has_options(rows)
    parsed = [parse_options(q) is not None for q in rows["question"]]
    assert flags.to_list() == parsed
    by_task = rows.with_columns(flags).group_by("task_name").agg(pl.col("has_options").mean())
    share = dict(by_task.iter_rows())
    assert share["cot_gsm8k"] == 0 and share["cot_strategyqa"] == 0  # zs_opt, but no options listed
    assert share["cot_ecqa"] == 1 and share["cot_qasc"] == 1 and share["cot_sensemaking"] == 1


def test_the_benchmark_runs_tiny_on_the_copied_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--shared", str(tmp_path / "absent"), "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "niv1_dev: 48 rows" in out and "flan_dev: 308 rows" in out
    for task in (
        "cot_ecqa_ii",
        "trec:1.0.0",
        "task044_essential_terms_identifying_essential_words"[:39],
        "all",
    ):
        assert task in out
    assert "rows/CPU-s" in out
