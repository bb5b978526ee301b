"""A prompt's own content: its words once the boilerplate it shares with its task is set aside.

FLAN prompts wrap a short instance in a long task template, so two distinct examples of one task
share most of their word n-grams. Near duplicates are therefore judged on each prompt's own content:

1. Template spans. A word n-gram (`template_ngram` words), or a prompt's first or last L words
   (L < `template_ngram`: templates open and close with short phrases such as "Q:" or "The
   thinking starts now:"), is boilerplate of a task when it occurs in at least `template_share`
   of the task's prompts and in at least `template_min_prompts` of them; a span that is
   boilerplate of at least `template_shared_tasks` tasks is boilerplate in every task (FLAN shares
   templates between tasks, and a task can have few distinct prompts of one: "Come up with a
   question and reasoning that would justify this answer: (G)" has eight in a task, one per
   option letter). Occurrences are counted over a
   sample of each task (its first `template_sample` distinct prompts in id order, which is
   pseudo-random) in a count-min table keyed by (task, span hash), so memory does not grow with
   the corpus.
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

from dedup.kernels import content_shingles, key_set, template_keys, word_multisets
from dedup.minhash import Shingles, Words, batch_words, fmix64
from dedup.normalize import NormalizedBatch
from dedup.set_kernels import count_min_add, count_min_estimate

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
    template_shared_tasks: int


def task_salts(n_tasks: int, seed: int) -> np.ndarray:
    """One 64-bit salt per task code and, last, one for templates shared by tasks (mixed into
    span hashes to count them per task and to key the shared ones)."""
    codes = np.arange(n_tasks + 1, dtype=np.uint64) + np.uint64(1)
    return fmix64(codes * _SALT + np.uint64(seed & 0xFFFFFFFF))


class TemplateCounts:
    """Template spans of each task: counted in a count-min table, then kept as an exact key set,
    with the spans that are template in several tasks keyed for every task.

    While counting, a blocked count-min table (two one-byte counters per key in one cache line,
    saturating at the largest threshold a task can get) estimates in how many distinct prompts
    each (task, span) occurs; a key is noted when its own occurrence lifts the estimate to `floor`
    (`template_min_prompts`, below every task's threshold). `finish` keeps the noted keys
    whose estimate reaches their task's threshold in a small hash set, adds a shared key for each
    span kept in at least `template_shared_tasks` tasks, and frees the table, so the sketch pass
    probes a table that stays in cache.
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
        bits = int(min(max_bits, max(22, int(np.ceil(np.log2(max(2 * expected, 1)))))))
        self.cap = int(min(max_count, 255))  # one-byte counters (the config keeps thresholds <= 255)
        self.table = np.zeros(2 << bits, dtype=np.uint8)
        salts = task_salts(n_tasks, seed)
        self.salts, self.shared_salt = salts[:n_tasks], salts[n_tasks]
        self.n_tasks = n_tasks
        self.sampled = np.zeros(n_tasks, dtype=np.int64)  # distinct prompts counted per task
        self.threshold = np.full(n_tasks, self.cap, dtype=np.int64)
        self.floor = min(floor, self.cap)
        self.noted: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.templates = np.zeros(0, dtype=np.uint64)  # key_set of template keys, after finish
        self.shared = 0  # spans that are template in several tasks, after finish

    def add(self, keys: np.ndarray, task: np.ndarray, span: np.ndarray) -> None:
        """Count keys (each prompt's distinct keys, with the task and span of each), in a fixed
        order."""
        self.noted.append(count_min_add(self.table, keys, task, span, self.cap, self.floor))

    def finish(self, settings: TemplateSettings) -> None:
        """Fix each task's threshold, keep the keys that reach it and key the shared spans."""
        share = np.ceil(settings.template_share * self.sampled).astype(np.int64)
        self.threshold = np.minimum(np.maximum(share, settings.template_min_prompts), self.cap)
        parts = [np.concatenate([p[i] for p in self.noted]) for i in range(3)] if self.noted else None
        keys, task, span = (
            parts if parts else (np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros(0, np.uint64))
        )
        kept = count_min_estimate(self.table, keys) >= self.threshold[task]
        keys, span = keys[kept], span[kept]
        spans, tasks = np.unique(span, return_counts=True)  # one kept key per (task, span)
        shared = spans[tasks >= settings.template_shared_tasks]
        self.shared = len(shared)
        shared_keys = fmix64(shared ^ self.shared_salt) | np.uint64(1)
        keep = np.concatenate([keys, shared_keys])
        self.templates = key_set(keep) if len(keep) else np.zeros(0, dtype=np.uint64)
        self.table = np.zeros(0, dtype=np.uint8)
        self.noted = []


def prompt_key_docs(
    batch: NormalizedBatch, task: np.ndarray, counts: TemplateCounts, tn: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(key, doc, span): the distinct template keys of each prompt of `batch`, in prompt order."""
    return template_keys(batch_words(batch).arrays(), counts.salts[task], tn)


@dataclass(frozen=True)
class ContentSketch:
    """Content shingles of a batch and word counts per prompt; word multisets when asked for."""

    content: Shingles
    n_words: np.ndarray
    n_content_words: np.ndarray
    numbers: np.ndarray  # multiset hash of the prompt's numbers (0: none)
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
        salt, shared_salt = np.zeros(len(task), np.uint64), np.uint64(0)
        templates = np.zeros(0, np.uint64)
    else:
        salt, shared_salt, templates = counts.salts[task], counts.shared_salt, counts.templates
    doc, hashes, n_content, covered, numbers = content_shingles(
        arrays,
        batch.data,
        salt,
        shared_salt,
        templates,
        settings.template_ngram,
        settings.ngram,
        settings.template_edit_words,
    )
    sketch = ContentSketch(Shingles(doc, hashes, w.n_docs), w.counts(), n_content, numbers)
    if not multisets:
        return sketch
    hashes32, template = word_multisets(arrays, covered)
    return ContentSketch(sketch.content, sketch.n_words, n_content, numbers, hashes32, template, w.first)
