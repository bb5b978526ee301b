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

import threading
from dataclasses import dataclass

import numpy as np

from dedup.minhash import Shingles, Words, batch_words, fmix64, ngram_spans, range_hashes
from dedup.normalize import NormalizedBatch

_CAP = np.uint16(0xFFFF)
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
    """Count-min table (two rows of uint16) of (task, n-gram) occurrences in distinct prompts."""

    def __init__(self, n_tasks: int, expected: int, seed: int, max_bits: int = 27) -> None:
        bits = int(min(max_bits, max(10, int(np.ceil(np.log2(max(4 * expected, 1)))))))
        self.mask = np.uint64((1 << bits) - 1)
        self.table = np.zeros((2, 1 << bits), dtype=np.uint16)
        self.salts = task_salts(n_tasks, seed)
        self.sampled = np.zeros(n_tasks, dtype=np.int64)  # distinct prompts counted per task
        self.threshold = np.full(n_tasks, np.iinfo(np.int64).max, dtype=np.int64)
        self.lock = threading.Lock()

    def keys(self, h: np.ndarray, task: np.ndarray) -> np.ndarray:
        """Per-task keys of n-gram hashes."""
        return fmix64(h ^ self.salts[task])

    def _cells(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (keys & self.mask).astype(np.int64), ((keys >> np.uint64(32)) & self.mask).astype(np.int64)

    def add(self, keys: np.ndarray) -> None:
        """Count each key once (callers pass the distinct keys of each prompt)."""
        for row, cells in enumerate(self._cells(keys)):
            u, c = np.unique(cells, return_counts=True)
            cur = self.table[row, u].astype(np.int64) + c
            self.table[row, u] = np.minimum(cur, int(_CAP)).astype(np.uint16)

    def count(self, keys: np.ndarray) -> np.ndarray:
        """Estimated occurrences (never below the true count)."""
        c0, c1 = self._cells(keys)
        return np.minimum(self.table[0, c0], self.table[1, c1])

    def finish(self, settings: TemplateSettings) -> None:
        """Fix each task's threshold from how many of its prompts were counted."""
        share = np.ceil(settings.template_share * self.sampled).astype(np.int64)
        self.threshold = np.minimum(np.maximum(share, settings.template_min_prompts), int(_CAP))


def doc_unique_keys(doc: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """`keys` with repeats inside one document removed."""
    if len(keys) == 0:
        return keys
    # a stable sort keeps each equal-key run in document order, so repeats are adjacent
    order = np.argsort(keys, kind="stable")
    d, k = doc[order], keys[order]
    first = np.ones(len(k), dtype=bool)
    first[1:] = (k[1:] != k[:-1]) | (d[1:] != d[:-1])
    return k[first]


def count_templates(
    batch: NormalizedBatch, task: np.ndarray, counts: TemplateCounts, settings: TemplateSettings
) -> None:
    """Add the distinct template-size n-grams of each prompt of `batch` to `counts`."""
    words = batch_words(batch)
    doc, fw, lw = ngram_spans(words, settings.template_ngram)
    keys = doc_unique_keys(doc, counts.keys(range_hashes(words, fw, lw), task[doc]))
    with counts.lock:
        counts.add(keys)
        np.add.at(counts.sampled, task, 1)


@dataclass(frozen=True)
class ContentSketch:
    """Content shingles and template n-grams of a batch, and word counts per prompt."""

    content: Shingles
    template: Shingles  # template words as a multiset (word hash, occurrence), across tasks
    all_words: Shingles  # every word, the same way
    n_words: np.ndarray
    n_content_words: np.ndarray


def _runs(doc_of_word: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first word, length) of each maximal run of kept words inside one document."""
    idx = np.flatnonzero(keep)
    if len(idx) == 0:
        return idx, idx
    brk = np.ones(len(idx), dtype=bool)
    brk[1:] = (np.diff(idx) != 1) | (doc_of_word[idx[1:]] != doc_of_word[idx[:-1]])
    starts = np.flatnonzero(brk)
    lengths = np.diff(np.append(starts, len(idx)))
    return idx[starts], lengths


def word_multiset(words: Words, doc_of_word: np.ndarray, mask: np.ndarray) -> Shingles:
    """The words of each prompt selected by `mask`, as a set of (word hash, occurrence) keys."""
    idx = np.flatnonzero(mask)
    if len(idx) == 0:
        return Shingles(np.empty(0, np.int64), np.empty(0, np.uint64), words.n_docs)
    doc = doc_of_word[idx]
    h = range_hashes(words, idx, idx)
    order = np.lexsort((idx, h, doc))
    d, hh = doc[order], h[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (hh[1:] != hh[:-1]) | (d[1:] != d[:-1])
    start = np.maximum.accumulate(np.where(new, np.arange(len(order)), 0))
    occurrence = (np.arange(len(order)) - start).astype(np.uint64)
    keys = fmix64(hh + occurrence * _SALT)
    back = np.argsort(order, kind="stable")
    return Shingles(doc, keys[back], words.n_docs)


def content_sketch(
    batch: NormalizedBatch,
    task: np.ndarray,
    counts: TemplateCounts | None,
    settings: TemplateSettings,
    words: Words | None = None,
) -> ContentSketch:
    """Content shingles (per `settings.ngram`) and template n-grams of every prompt of `batch`."""
    words = words if words is not None else batch_words(batch)
    n_docs = words.n_docs
    total_words = len(words.starts)
    doc_of_word = words.doc()
    covered = np.zeros(total_words, dtype=bool)
    if counts is not None and total_words:
        doc, fw, lw = ngram_spans(words, settings.template_ngram)
        h = range_hashes(words, fw, lw)
        common = counts.count(counts.keys(h, task[doc])) >= counts.threshold[task[doc]]
        if common.any():
            delta = np.zeros(total_words + 1, dtype=np.int64)
            np.add.at(delta, fw[common], 1)
            np.add.at(delta, lw[common] + 1, -1)
            covered = np.cumsum(delta[:-1]) > 0
    template = word_multiset(words, doc_of_word, covered)
    first, length = _runs(doc_of_word, ~covered)
    if settings.template_edit_words > 0 and len(first):
        last = first + length - 1
        before = first - 1
        after = last + 1
        inside = (before >= 0) & (after < total_words)
        inside &= doc_of_word[np.maximum(before, 0)] == doc_of_word[first]
        inside &= doc_of_word[np.minimum(after, total_words - 1)] == doc_of_word[first]
        edit = inside & (length <= settings.template_edit_words)
        edit &= covered[np.maximum(before, 0)] & covered[np.minimum(after, total_words - 1)]
        first, length = first[~edit], length[~edit]
    n = settings.ngram
    k = np.where(length >= n, length - n + 1, 1)
    run = np.repeat(np.arange(len(first), dtype=np.int64), k)
    k_first = np.zeros(len(first) + 1, dtype=np.int64)
    np.cumsum(k, out=k_first[1:])
    fw = first[run] + (np.arange(len(run), dtype=np.int64) - k_first[run])
    lw = np.minimum(fw + (n - 1), first[run] + length[run] - 1)
    cdoc = doc_of_word[fw] if len(fw) else np.empty(0, np.int64)
    ch = range_hashes(words, fw, lw) if len(fw) else np.empty(0, np.uint64)
    n_content = np.bincount(doc_of_word[first], weights=length, minlength=n_docs).astype(np.int64)
    return ContentSketch(
        Shingles(cdoc, ch, n_docs),
        template,
        word_multiset(words, doc_of_word, np.ones(total_words, dtype=bool)),
        words.counts(),
        n_content,
    )
