"""The streaming passes of the dedup stage: template counts, then per-row keys and LSH band keys.

Pass 1 counts template n-grams over a sample of each task (`TemplateCounts`). Pass 2 streams every
question once: exact key, content MinHash signature (never stored whole), its LSH band keys (one
file per band on disk, read back one band at a time), and matches against evaluation items and an
earlier release. Memory holds per-row keys and counts, never the corpus text or its signatures.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
from tqdm import tqdm

from dedup.config import DedupConfig
from dedup.content import TemplateCounts, content_sketch, prompt_key_docs
from dedup.corpus import Corpus
from dedup.decontam import DedupInputError, EvalIndex, overlap_matches
from dedup.lsh import band_keys, cross_pairs, estimated_jaccard, lsh_params
from dedup.minhash import MinHashParams, batch_shingles, batch_words, run_chunks, signatures_from_shingles
from dedup.normalize import blank_questions, byte_lengths, exact_keys, normalize_arrow, normalize_batch

logger = logging.getLogger(__name__)

_HITS_SCHEMA = {"row": pl.Int64, "other": pl.Int64, "score": pl.Float64}


def template_counts(corpus: Corpus, cfg: DedupConfig, seed: int) -> TemplateCounts:
    """Count template n-grams over the first `template_sample` distinct prompts of each task."""
    settings, tn = cfg.template_settings(), cfg.template_ngram
    rank = pl.DataFrame({"t": corpus.task}).select(pl.int_range(pl.len()).over("t"))[:, 0].to_numpy()
    sampled = rank < cfg.template_sample
    n_tasks = len(corpus.task_names)
    max_count = max(int(np.ceil(cfg.template_share * cfg.template_sample)), cfg.template_min_prompts)
    counts = TemplateCounts(n_tasks, int(sampled.sum()) * 64, seed, max_count, cfg.template_min_prompts)
    seen: set[int] = set()
    bar = tqdm(total=int(sampled.sum()), desc="dedup templates", unit="doc", disable=corpus.n < 100_000)

    blank: list[str] = []

    def chunks() -> Iterator[tuple[pa.Array, np.ndarray]]:
        for lo, questions in corpus.arrow_batches():
            empty = np.flatnonzero(blank_questions(questions))
            if len(empty):
                blank.extend(corpus.ids.gather(lo + empty[:5]).cast(pl.String).to_list())
            rows = np.flatnonzero(sampled[lo : lo + len(questions)])
            if not len(rows):
                continue
            # copies only when some rows are left out (every row is sampled in a small corpus)
            raw = questions if len(rows) == len(questions) else questions.take(rows)
            task = corpus.task[lo + rows]
            bar.update(len(rows))
            starts = chunk_starts(byte_lengths(raw), cfg.chunk_size, cfg.chunk_bytes)
            for a, b in zip(starts, [*starts[1:], len(rows)], strict=True):
                yield raw.slice(a, b - a), task[a:b]

    def work(texts: pa.Array, task: np.ndarray) -> tuple[np.ndarray, ...]:
        # repeats of one text (up to case) count once: a prompt copied many times is no template
        case_keys = pl.Series(texts).str.to_lowercase().hash(seed=0).to_numpy()
        keys, doc, span = prompt_key_docs(normalize_arrow(texts), task, counts, tn)
        return task, case_keys, keys, doc, span

    def add(
        task: np.ndarray, case_keys: np.ndarray, keys: np.ndarray, doc: np.ndarray, span: np.ndarray
    ) -> None:
        # which texts are repeats depends on the order, so this runs here, in chunk order
        distinct = np.zeros(len(task), dtype=bool)
        for i, key in enumerate(case_keys.tolist()):
            tagged = (key << 20) | int(task[i])
            distinct[i] = tagged not in seen
            seen.add(tagged)
        np.add.at(counts.sampled, task[distinct], 1)
        own = distinct[doc]  # the keys of a repeated text are dropped (each doc's keys are its own)
        counts.add(keys[own], task[doc[own]], span[own])

    # workers hash the next chunks while this thread adds finished ones, in chunk order (which
    # keys get noted depends on the order)
    with ThreadPoolExecutor(max_workers=cfg.n_workers) as pool:
        pending: deque[Future] = deque()
        for texts, task in chunks():
            pending.append(pool.submit(work, texts, task))
            if len(pending) > 2 * cfg.n_workers:
                add(*pending.popleft().result())
        while pending:
            add(*pending.popleft().result())
    if blank:
        raise DedupInputError(f"{corpus.source}: row(s) with an empty question (ids: {', '.join(blank[:5])})")
    bar.close()
    counts.finish(settings)
    return counts


@dataclass
class CrossIndex:
    """Signatures of items (eval items or an earlier release) and their LSH band keys."""

    sig: np.ndarray
    ok: np.ndarray
    threshold: float
    bands: int
    rows: int
    keys: np.ndarray = field(init=False)
    items: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.items = np.flatnonzero(self.ok)
        self.keys = band_keys(self.sig, self.bands, self.rows, self.items)

    @classmethod
    def build(cls, sig: np.ndarray, ok: np.ndarray, threshold: float, cfg: DedupConfig) -> CrossIndex:
        bands, rows = lsh_params(cfg.num_perm, threshold, false_negative_weight=cfg.false_negative_weight)
        return cls(sig, ok, threshold, bands, rows)

    def matches(self, sig: np.ndarray, ok: np.ndarray, row_offset: int) -> pl.DataFrame:
        """(row, item, estimated Jaccard) for rows of `sig` whose estimate reaches the threshold."""
        mine = np.flatnonzero(ok)
        if not len(mine) or not len(self.items):
            return pl.DataFrame(schema=_HITS_SCHEMA)
        i, j = cross_pairs(band_keys(sig, self.bands, self.rows, mine), self.keys)
        ia, ib = mine[i], self.items[j]
        score = estimated_jaccard(sig, ia, self.sig, ib)
        sel = score >= self.threshold
        return pl.DataFrame({"row": ia[sel] + row_offset, "other": ib[sel], "score": score[sel]})


@dataclass
class Sketch:
    """Per-row results of the sketch pass; band keys live in `band_dir`, one file per band."""

    key_hi: np.ndarray
    key_lo: np.ndarray
    n_content: np.ndarray  # content shingles per row
    n_words: np.ndarray
    n_content_words: np.ndarray
    numbers: np.ndarray  # multiset hash of each row's numbers (0: none)
    band_dir: Path
    bands: int
    overlaps: list[pl.DataFrame] = field(default_factory=list)  # eval n-gram overlap
    eval_hits: list[pl.DataFrame] = field(default_factory=list)
    previous_hits: list[pl.DataFrame] = field(default_factory=list)

    def band(self, b: int) -> np.ndarray:
        """Band `b`'s key for every row."""
        return np.fromfile(self.band_dir / f"band_{b:03d}.u64", dtype=np.uint64)


def chunk_starts(lengths: np.ndarray, max_docs: int, max_bytes: int) -> list[int]:
    """Start rows of consecutive chunks holding <= max_docs rows and about <= max_bytes of text."""
    starts = [0]
    csum = np.cumsum(lengths)
    n = len(lengths)
    while starts[-1] < n:
        lo = starts[-1]
        base = csum[lo - 1] if lo else 0
        hi = int(np.searchsorted(csum, base + max_bytes, side="right"))
        starts.append(min(max(hi, lo + 1), lo + max_docs, n))
    return starts[:-1]


def content_signatures(
    questions: list[str],
    task: np.ndarray,
    counts: TemplateCounts | None,
    params: MinHashParams,
    cfg: DedupConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """(signatures, content shingle counts) of questions (for an earlier release or a test)."""
    batch = normalize_batch(questions)
    cs = content_sketch(batch, task, counts, cfg.template_settings())
    return signatures_from_shingles(cs.content, params), cs.content.counts()


def sketch_corpus(
    corpus: Corpus,
    counts: TemplateCounts,
    params: MinHashParams,
    cfg: DedupConfig,
    band_dir: Path,
    eval_index: EvalIndex | None = None,
    eval_cross: CrossIndex | None = None,
    previous: CrossIndex | None = None,
) -> Sketch:
    """Stream every question once: exact keys, content band keys, eval and previous-release hits."""
    n = corpus.n
    bands, rows = cfg.lsh()
    out = Sketch(
        np.empty(n, np.uint64),
        np.empty(n, np.uint64),
        np.empty(n, np.int64),
        np.empty(n, np.int64),
        np.empty(n, np.int64),
        np.empty(n, np.uint64),
        band_dir,
        bands,
    )
    settings = cfg.template_settings()
    files = [open(band_dir / f"band_{b:03d}.u64", "wb") for b in range(bands)]  # noqa: SIM115
    bar = tqdm(total=n, desc="dedup sketch", unit="doc", disable=n < 100_000)
    cur: dict = {}

    def work(ci: int) -> None:
        lo, questions, keys = cur["lo"], cur["questions"], cur["keys"]
        a, b = cur["starts"][ci], cur["ends"][ci]
        raw = questions.slice(a, b - a)
        batch = normalize_arrow(raw)
        g = slice(lo + a, lo + b)
        out.key_hi[g], out.key_lo[g] = exact_keys(batch, raw)
        words = batch_words(batch)
        cs = content_sketch(batch, corpus.task[g], counts, settings, words)
        sig = signatures_from_shingles(cs.content, params)
        ok = cs.content.counts() > 0
        out.n_content[g] = cs.content.counts()
        out.n_words[g], out.n_content_words[g], out.numbers[g] = cs.n_words, cs.n_content_words, cs.numbers
        keys[a:b] = band_keys(sig, bands, rows)
        hits = [pl.DataFrame(), pl.DataFrame(), pl.DataFrame()]
        if eval_index is not None:
            dsh = batch_shingles(batch, cfg.decontam_ngram, words)
            hits[0] = overlap_matches(dsh, eval_index, cfg.decontam_overlap, lo + a)
        if eval_cross is not None:
            hits[1] = eval_cross.matches(sig, ok, lo + a)
        if previous is not None:
            hits[2] = previous.matches(sig, ok, lo + a)
        cur["found"][ci] = hits

    try:
        for lo, questions in corpus.arrow_batches():
            size = len(questions)
            starts = chunk_starts(byte_lengths(questions), cfg.chunk_size, cfg.chunk_bytes)
            cur.update(
                lo=lo,
                questions=questions,
                keys=np.empty((size, bands), dtype=np.uint64),
                starts=starts,
                ends=[*starts[1:], size],
                found=[None] * len(starts),
            )
            run_chunks(work, range(len(starts)), cfg.n_workers)
            for b in range(bands):
                files[b].write(np.ascontiguousarray(cur["keys"][:, b]).tobytes())
            for overlap, eval_hit, prev_hit in cur["found"]:
                out.overlaps.append(overlap)
                out.eval_hits.append(eval_hit)
                out.previous_hits.append(prev_hit)
            bar.update(size)
    finally:
        for f in files:
            f.close()
        bar.close()
    return out
