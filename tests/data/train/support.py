"""Tiny release folders and models for the train/eval tests (Hub dataset layout, real Parquet)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

TRACE_COLUMNS = [
    "id", "submix", "task_name", "template_type", "has_options", "system_prompt_id", "system_prompt",
    "question", "reference", "teacher", "teacher_model", "response", "finish_reason",
    "prompt_tokens", "completion_tokens",
]  # fmt: skip
PROMPT_COLUMNS = TRACE_COLUMNS[:9]

_QA = [
    ("What is two plus two?", "4", "Two plus two is four. The answer is 4."),
    (
        "What color is the sky on a clear day?",
        "blue",
        "On a clear day the sky looks blue. The answer is blue.",
    ),
    ("Is fire hot? OPTIONS:\n- yes\n- no", "yes", "Fire burns, so it is hot. The answer is yes."),
    ("What is the capital of France?", "Paris", "France's capital city is Paris. The answer is Paris."),
    ("How many legs does a cat have?", "4", "A cat walks on four legs. The answer is 4."),
    ("Is ice cold? OPTIONS:\n- yes\n- no", "yes", "Ice is frozen water, so it is cold. The answer is yes."),
    ("What do bees make?", "honey", "Bees collect nectar and make honey. The answer is honey."),
    ("What is the opposite of up?", "down", "The opposite direction of up is down. The answer is down."),
]
SYSTEMS = ["", "You are a helpful assistant.", "Explain step by step."]

HELDOUT = [
    # (submix, has_options, question, reference)
    ("flan2021", True, "Is water wet?\nOPTIONS:\n- yes\n- no", "yes"),
    ("flan2021", True, "Pick the animal.\nOptions:\n(A) rock\n(B) dog\n(C) chair", "(B)"),
    ("cot", False, "What is three plus one?", "4"),
    ("cot", False, "What is the color of grass?", "green"),
    ("t0", True, "Which is a fruit? Options: A) apple B) car", "A"),
    ("t0", False, "Name the star at the center of the solar system.", "the Sun"),
]


def trace_rows(teacher: str) -> list[dict]:
    """Trace-table rows of one demo teacher, sorted by id."""
    rows = []
    for i, (q, ref, resp) in enumerate(_QA):
        rows.append(
            {
                "id": f"q{i:03d}",
                "submix": "cot" if i % 2 else "flan2021",
                "task_name": f"task_{i % 3}",
                "template_type": "zs_opt" if "OPTIONS" in q else "zs_noopt",
                "has_options": "OPTIONS" in q,
                "system_prompt_id": (i % 3) + 1,
                "system_prompt": SYSTEMS[i % 3],
                "question": q,
                "reference": ref,
                "teacher": teacher,
                "teacher_model": f"models/{teacher}",
                "response": resp if teacher == "tiny-b" else resp.split(". ")[-1],
                "finish_reason": "stop",
                "prompt_tokens": 10,
                "completion_tokens": 5,
            }
        )
    return rows


def heldout_rows() -> list[dict]:
    rows = []
    for i, (submix, opt, q, ref) in enumerate(HELDOUT):
        rows.append(
            {
                "id": f"h{i:03d}",
                "submix": submix,
                "task_name": f"held_{submix}",
                "template_type": "zs_opt" if opt else "zs_noopt",
                "has_options": opt,
                "system_prompt_id": 1,
                "system_prompt": "",
                "question": q,
                "reference": ref,
            }
        )
    return rows


def _write(rows: list[dict], columns: list[str], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist([{c: r[c] for c in columns} for r in rows]), path)


def make_release(folder: Path, teachers: tuple[str, ...] = ("tiny-a", "tiny-b")) -> Path:
    """A release folder in the Hub dataset layout: default, one config per teacher, heldout/test."""
    per = {t: trace_rows(t) for t in teachers}
    everything = sorted((r for rows in per.values() for r in rows), key=lambda r: (r["id"], r["teacher"]))
    _write(everything, TRACE_COLUMNS, folder / "data" / "default" / "train-00000-of-00001.parquet")
    for t, rows in per.items():
        _write(rows, TRACE_COLUMNS, folder / "data" / t / "train-00000-of-00001.parquet")
    _write(heldout_rows(), PROMPT_COLUMNS, folder / "data" / "heldout" / "test-00000-of-00001.parquet")
    configs = [("default", "train"), *((t, "train") for t in teachers), ("heldout", "test")]
    lines = ["---", "configs:"]
    for name, split in configs:
        lines += [
            f"- config_name: {name}",
            "  data_files:",
            f"  - split: {split}",
            f"    path: data/{name}/{split}-*.parquet",
        ]
    lines += ["---", "", "# tiny test release", ""]
    (folder / "README.md").write_text("\n".join(lines), encoding="utf-8")
    return folder


def tokenizer_texts() -> list[str]:
    """Texts the tiny student's tokenizer is trained on (covers train and heldout wording)."""
    texts = []
    for q, ref, resp in _QA:
        texts += [q, ref, resp]
    for _, _, q, ref in HELDOUT:
        texts += [q, ref]
    return (texts + SYSTEMS[1:]) * 4


def make_memo_release(folder: Path) -> Path:
    """A release whose only teacher ("memo") answers the held-out questions with their references.

    Training on it must lift held-out accuracy: the eval test's proof that generation, formatting
    and scoring line up end to end (plumbing, not a benchmark).
    """
    rows = [
        {**r, "teacher": "memo", "teacher_model": "memo", "response": r["reference"], "finish_reason": "stop",
         "prompt_tokens": 10, "completion_tokens": 2}
        for r in heldout_rows()
    ]  # fmt: skip
    _write(rows, TRACE_COLUMNS, folder / "data" / "memo" / "train-00000-of-00001.parquet")
    _write(heldout_rows(), PROMPT_COLUMNS, folder / "data" / "heldout" / "test-00000-of-00001.parquet")
    lines = ["---", "configs:"]
    for name, split in (("memo", "train"), ("heldout", "test")):
        lines += [
            f"- config_name: {name}",
            "  data_files:",
            f"  - split: {split}",
            f"    path: data/{name}/{split}-*.parquet",
        ]
    (folder / "README.md").write_text("\n".join([*lines, "---", ""]), encoding="utf-8")
    return folder
