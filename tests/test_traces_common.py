"""Shared helpers of the traces tests: prompt tables in the CONTRACTS.md layout, tiny teachers."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

import polars as pl

from builders.tiny_llama import build_tiny_llama
from builders.traces.config import TracesConfig

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "answer",
    "question",
    "explain",
    "step",
    "by",
    "step",
    "because",
    "so",
]


def texts(n: int = 200, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(25)) for _ in range(n)]


def build_teacher(path: Path, seed: int = 0) -> Path:
    return build_tiny_llama(path, texts(), vocab_size=512, max_position_embeddings=256, seed=seed)


def prompt_table(n: int, *, start: int = 0, long_question_at: int | None = None) -> pl.DataFrame:
    """`n` prompts with the CONTRACTS.md prompt columns; alternate empty / non-empty system messages."""
    rows = []
    for k in range(start, start + n):
        question = f"question {k}: " + " ".join(WORDS[(k + j) % len(WORDS)] for j in range(8))
        if k == long_question_at:
            question = " ".join(WORDS * 40)
        rows.append(
            {
                "id": hashlib.sha256(f"p{k}".encode()).hexdigest()[:24],
                "submix": "cot",
                "task_name": f"task_{k % 3}",
                "template_type": "zs_opt",
                "has_options": False,
                "system_prompt_id": 1 if k % 2 == 0 else 6,
                "system_prompt": "" if k % 2 == 0 else "explain step by step",
                "question": question,
                "reference": "the dog",
            }
        )
    return pl.DataFrame(rows).with_columns(pl.col("system_prompt_id").cast(pl.Int32)).sort("id")


def traces_cfg(teachers: list[dict[str, Any]], **kw: Any) -> TracesConfig:
    return TracesConfig.model_validate({"teachers": teachers, "min_new_tokens": 4, **kw})
