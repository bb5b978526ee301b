"""A prompt's own content: its words once the boilerplate it shares with its task is set aside.

FLAN prompts wrap a short instance in a long task template, so two distinct examples of one task
share most of their word n-grams. Near duplicates are therefore judged on each prompt's own content:

1. Template n-grams. A word n-gram (`template_ngram` words) is boilerplate of a task when it occurs
   in at least `template_share` of the task's prompts and in at least `template_min_prompts` of
   them. Occurrences are counted over a sample of each task (its first `template_sample` distinct
   prompts in id order, which is pseudo-random) in a count-min table keyed by (task, n-gram hash),
   so memory does not grow with the corpus.
2. Template words: words inside a template n-gram. The rest, in runs, is the prompt's own content.
   A run of at most `template_edit_words` words with template words on both sides is an edit
   inside the template (a changed or inserted word), not content.
3. Content shingles: word `ngram`-grams inside content runs (a shorter run is one shingle). The
   template words of a prompt, as a multiset, tell the same example under another template (whole
   sentences differ) from a light edit (a few words differ).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dedup.kernels import (
    content_shingles,
    count_min_add,
    count_min_estimate,
    key_set,
    template_keys,
    word_multisets,
)
from dedup.minhash import Shingles, Words, batch_words, fmix64
from dedup.normalize import NormalizedBatch

_SALT = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class TemplateSettings:
    """What decides that an n-gram is template and what a prompt's content shingles are.

    Built by `DedupConfig.template_settings()`, where the defaults live.
    """

    ngram: int
    template_ngram: int
    template_share: float
    template_min_prompts: int
    template_edit_words: int


def task_salts(n_tasks: int, seed: int) -> np.ndarray:
    """One 64-bit salt per task code (mixed into n-gram hashes to count them per task)."""
    codes = np.arange(n_tasks, dtype=np.uint64) + np.uint64(1)
    return fmix64(codes * _SALT + np.uint64(seed & 0xFFFFFFFF))


class TemplateCounts:
    """Template n-grams of each task: counted in a count-min table, then kept as an exact key set.

    While counting, a blocked count-min table (two one-byte counters per key in one cache line,
    saturating at the largest threshold a task can get) estimates in how many distinct prompts
    each (task, n-gram) occurs; a key is noted when its own occurrence lifts the estimate to
    `floor` (`template_min_prompts`, below every task's threshold). `finish` keeps the noted keys
    whose estimate reaches their task's threshold in a small hash set and frees the table, so the
    sketch pass probes a table that stays in cache.
    """

    def __init__(
        self,
        n_tasks: int,
        expected: int,
        seed: int,
        max_count: int = 255,
        floor: int = 2,
        max_bits: int = 27,
    ) -> None:
        bits = int(min(max_bits, max(16, int(np.ceil(np.log2(max(2 * expected, 1)))))))
        self.cap = int(min(max_count, 255))  # one-byte counters (the config keeps thresholds <= 255)
        self.table = np.zeros(2 << bits, dtype=np.uint8)
        self.salts = task_salts(n_tasks, seed)
        self.sampled = np.zeros(n_tasks, dtype=np.int64)  # distinct prompts counted per task
        self.threshold = np.full(n_tasks, self.cap, dtype=np.int64)
        self.floor = min(floor, self.cap)
        self.noted: list[tuple[np.ndarray, np.ndarray]] = []
        self.templates = np.zeros(0, dtype=np.uint64)  # key_set of template keys, after finish

    def add(self, keys: np.ndarray, task: np.ndarray) -> None:
        """Count keys (each prompt's distinct keys, with the task of each), in a fixed order."""
        self.noted.append(count_min_add(self.table, keys, task, self.cap, self.floor))

    def finish(self, settings: TemplateSettings) -> None:
        """Fix each task's threshold and keep the keys that reach it."""
        share = np.ceil(settings.template_share * self.sampled).astype(np.int64)
        self.threshold = np.minimum(np.maximum(share, settings.template_min_prompts), self.cap)
        keys = np.concatenate([k for k, _ in self.noted]) if self.noted else np.zeros(0, np.uint64)
        task = np.concatenate([t for _, t in self.noted]) if self.noted else np.zeros(0, np.int64)
        estimate = count_min_estimate(self.table, keys)
        keep = keys[estimate >= self.threshold[task]]
        self.templates = key_set(keep) if len(keep) else np.zeros(0, dtype=np.uint64)
        self.table = np.zeros(0, dtype=np.uint8)
        self.noted = []


def prompt_key_docs(
    batch: NormalizedBatch, task: np.ndarray, counts: TemplateCounts, tn: int
) -> tuple[np.ndarray, np.ndarray]:
    """(key, doc): the distinct per-task tn-gram keys of each prompt of `batch`, in prompt order."""
    return template_keys(batch_words(batch).arrays(), counts.salts[task], tn)


def prompt_keys(
    batch: NormalizedBatch, task: np.ndarray, counts: TemplateCounts, tn: int
) -> tuple[np.ndarray, np.ndarray]:
    """(key, task): the distinct per-task tn-gram keys of each prompt of `batch`, in prompt order."""
    keys, doc = prompt_key_docs(batch, task, counts, tn)
    return keys, task[doc]


@dataclass(frozen=True)
class ContentSketch:
    """Content shingles of a batch and word counts per prompt; word multisets when asked for."""

    content: Shingles
    n_words: np.ndarray
    n_content_words: np.ndarray
    words: np.ndarray | None = None  # word hashes (top 32 bits), sorted within each prompt
    template: np.ndarray | None = None  # whether each of those words is template
    word_offsets: np.ndarray | None = None  # prompt i's words are words[word_offsets[i]:...[i + 1]]


def content_sketch(
    batch: NormalizedBatch,
    task: np.ndarray,
    counts: TemplateCounts | None,
    settings: TemplateSettings,
    words: Words | None = None,
    multisets: bool = False,
) -> ContentSketch:
    """Content shingles (per `settings.ngram`) of every prompt of `batch`; with `multisets`, its
    words (sorted hashes, template flags) too, for `dedup.kernels.pair_scores`."""
    w = words if words is not None else batch_words(batch)
    arrays = w.arrays()
    if counts is None:
        salt, templates = np.zeros(len(task), np.uint64), np.zeros(0, np.uint64)
    else:
        salt, templates = counts.salts[task], counts.templates
    doc, hashes, n_content, covered = content_shingles(
        arrays,
        salt,
        templates,
        settings.template_ngram,
        settings.ngram,
        settings.template_edit_words,
    )
    sketch = ContentSketch(Shingles(doc, hashes, w.n_docs), w.counts(), n_content)
    if not multisets:
        return sketch
    hashes32, template = word_multisets(arrays, covered)
    return ContentSketch(sketch.content, sketch.n_words, n_content, hashes32, template, w.first)
