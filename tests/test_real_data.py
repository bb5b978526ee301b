"""The benchmarks' ground truth for planted edits: which edits leave the original's example."""

from __future__ import annotations

import numpy as np

from benchmarks.dedup_data import edit_words, tracked_edit
from benchmarks.real_data import edited_instance, instance_jaccard

QUESTION = 'Question: "Where is the capital city of Burma located ?"\nOPTIONS:\n- location\n- human\nAnswer:'
INSTANCE = "Where is the capital city of Burma located ?"


def test_tracked_edit_draws_what_edit_words_draws() -> None:
    words, vocab = QUESTION.split(" "), np.array(["alpha", "beta", "gamma"])
    for seed in range(20):
        plain = edit_words(np.random.default_rng(seed), words, vocab, 3)
        tracked, origin, new = tracked_edit(np.random.default_rng(seed), words, vocab, 3)
        assert plain == tracked and len(origin) == len(new) == len(tracked)
        assert all(tracked[i] == words[origin[i]] for i in range(len(tracked)) if not new[i])


def test_an_edit_outside_the_instance_keeps_it_whole() -> None:
    words = QUESTION.split(" ")
    edited = [*words[:-1], "Reply:"]  # the template's last word replaced
    origin, new = list(range(len(words))), [False] * (len(words) - 1) + [True]
    assert edited_instance(QUESTION, INSTANCE, edited, origin, new) == INSTANCE


def test_an_edit_inside_a_short_instance_makes_another_example() -> None:
    words = QUESTION.split(" ")
    i = words.index("capital")
    edited = [*words[:i], "second", *words[i:]]  # an inserted word
    origin = [*range(i), i, *range(i, len(words))]
    new = [False] * i + [True] + [False] * (len(words) - i)
    after = edited_instance(QUESTION, INSTANCE, edited, origin, new)
    assert after == "Where is the second capital city of Burma located ?"
    assert instance_jaccard(INSTANCE, after) < 0.5  # the bar a false merge is measured by


def test_an_instance_the_prompt_does_not_hold_is_unchanged() -> None:
    words = QUESTION.split(" ")
    assert edited_instance(QUESTION, "a question only the answer shows", words, list(range(len(words))),
                           [True] * len(words)) == "a question only the answer shows"  # fmt: skip
