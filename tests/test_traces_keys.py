"""Column-at-a-time cache keys, fraction, request seeds and response filters equal their row-at-a-time
definitions (caches written by earlier versions stay valid; the same prompts get the same teachers)."""

from __future__ import annotations

import hashlib
import json
import random

import polars as pl

from builders.generation.base import SamplingConfig
from builders.generation.keys import cache_keys, request_seeds, selected_mask
from builders.traces.config import TracesConfig
from builders.traces.filters import response_problems

ALPHABET = ["a", '"', "\\", "\n", "\t", "\x00", "\x1f", "\x7f", "é", "\u2028", "😀", " ", "\r", "/", "{", "}"]


def unit_hash(seed: int, pid: str) -> int:  # the definition the docs give
    return int.from_bytes(hashlib.sha256(f"{seed}:{pid}".encode()).digest()[:8], "big")


def frame(n: int = 2000) -> pl.DataFrame:
    rng = random.Random(1)
    text = lambda k: "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, k)))  # noqa: E731
    return pl.DataFrame({"id": [f"id{i}" for i in range(n)], "system_prompt": [text(20) for _ in range(n)],
                         "question": [text(60) for _ in range(n)]})  # fmt: skip


def test_cache_keys_are_sha256_of_the_json_list() -> None:
    df, sampling = frame(), SamplingConfig(temperature=0.3, max_tokens=99, seed=4)
    dump = sampling.model_dump(mode="json")
    want = [
        hashlib.sha256(
            json.dumps([i, s, q, "org/m", "abc", dump], sort_keys=True, ensure_ascii=False).encode()
        ).hexdigest()
        for i, s, q in df.iter_rows()
    ]
    assert cache_keys(df, "org/m", "abc", sampling).to_list() == want


def test_fraction_and_seeds_follow_the_unit_hash() -> None:
    ids = frame()["id"]
    for fraction in (0.5, 0.1, 0.999):
        want = [unit_hash(7, i) < fraction * 2**64 for i in ids]
        assert selected_mask(ids, fraction, 7).to_list() == want
    assert selected_mask(ids, 1.0, 7).all()
    assert request_seeds(3, ids).to_list() == [unit_hash(3, i) & 0x7FFFFFFF for i in ids]


def test_response_filters_first_match_wins() -> None:
    cfg = TracesConfig.model_validate(
        {
            "teachers": [{"name": "a", "model": "m", "sampling": {"max_tokens": 8}}],
            "min_response_chars": 5,
            "refusal_phrases": ["As an AI (model)", "sorry"],
        }
    )
    df = pl.DataFrame(
        {
            "response": [
                "fine but cut",
                " \x1c\u3000 ",
                "I'm SORRY as an ai (MODEL)",
                " abc ",
                "a full answer",
            ],
            "finish_reason": ["length", "stop", "stop", "stop", "stop"],
        }
    )
    got = response_problems(df, cfg).rows()
    assert got == [
        ("truncated", "finish_reason=length"),
        ("empty_response", "finish_reason=stop"),  # Python's str.strip() whitespace, \x1c included
        ("refusal", "As an AI (model)"),  # the first phrase of the list, ignoring case, literally
        ("too_short", "3 < 5 chars"),
        (None, None),
    ]
