"""Rebuild the golden dedup test tables: `python tests/data/dedup/make_golden.py`."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

HERE = Path(__file__).parent
WORDS = [
    "river",
    "mountain",
    "engine",
    "violin",
    "harbor",
    "lantern",
    "meadow",
    "copper",
    "falcon",
    "orchard",
    "glacier",
    "pepper",
    "canyon",
    "marble",
    "thunder",
    "velvet",
    "saddle",
    "quartz",
    "bamboo",
    "compass",
    "ember",
    "fossil",
    "garnet",
    "hollow",
    "island",
    "jasmine",
    "kettle",
    "lagoon",
    "mosaic",
    "nectar",
    "oyster",
    "pebble",
    "quiver",
    "raven",
    "summit",
    "tundra",
    "umbrella",
    "vapor",
    "willow",
    "yarrow",
    "zephyr",
    "anchor",
    "beacon",
    "cedar",
    "dune",
    "falcon",
    "grotto",
    "hazel",
    "ivory",
    "juniper",
    "kiln",
    "lilac",
]
PREFIX = (
    "You are given a short passage taken from an encyclopedia article together with a question about "
    "it. Read the passage carefully, think about what it says, and then choose the answer that is best "
    "supported by the passage. Do not use any outside knowledge and do not guess when the passage is "
    "silent. Passage:"
)
SUFFIX = (
    "Question: Which of the options below is best supported by the passage above? Options: - the first "
    "statement is true - the second statement is true - neither statement is true - both statements are "
    "true. Answer with the option text only."
)


def row(i: int, question: str, task: str = "golden_task") -> dict[str, object]:
    rid = hashlib.sha256(f"flan2021|{task}|zs_opt|{question}|{i}".encode()).hexdigest()[:24]
    return {
        "id": rid,
        "submix": "flan2021",
        "task_name": task,
        "template_type": "zs_opt",
        "has_options": False,
        "system_prompt_id": 3,
        "system_prompt": "",
        "question": question,
        "reference": "yes",
    }


def main() -> None:
    rng = random.Random(7)
    rows = []
    # Exact duplicates differing only in case, whitespace and punctuation.
    variants = [
        "What is the capital of France?",
        "what is the capital of france",
        "  WHAT is the capital,  of France?! ",
    ]
    for q in variants:
        rows.append(row(len(rows), q, "exact_group"))
    # A planted near duplicate: a 70-word passage and a copy with one word changed.
    passage = " ".join(rng.choice(WORDS) + str(rng.randrange(100)) for _ in range(70))
    words = passage.split()
    words[35] = "completely"
    rows.append(row(len(rows), passage, "near_group"))
    rows.append(row(len(rows), " ".join(words), "near_group"))
    # Distinct prompts that share a long template around short, different content.
    for _ in range(30):
        content = " ".join(rng.choice(WORDS) + str(rng.randrange(1000)) for _ in range(12))
        rows.append(row(len(rows), f"{PREFIX} {content} {SUFFIX}", "template_group"))
    # A prompt that embeds an evaluation item, and unrelated prompts.
    rows.append(row(len(rows), "Answer the question. Q: " + EVAL[0] + " A:", "contaminated_group"))
    for k in range(5):
        text = f"Translate sentence number {k} about {rng.choice(WORDS)} into German."
        rows.append(row(len(rows), text, "misc"))
    with (HERE / "prompts.jsonl").open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    with (HERE / "eval.jsonl").open("w", encoding="utf-8") as fh:
        for i, text in enumerate(EVAL):
            fh.write(json.dumps({"qid": i, "prompt": text}) + "\n")


EVAL = [
    "A farmer has seventeen sheep and all but nine run away through a hole in the fence. "
    "How many sheep does the farmer have left in the field?",
    "Which planet in our solar system has the longest day measured in Earth hours?",
    "If a train leaves the station at noon travelling sixty miles per hour, how far has it gone by three?",
]

if __name__ == "__main__":
    main()
