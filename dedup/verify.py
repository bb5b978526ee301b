"""Exact similarity of candidate pairs: content shingle Jaccard and template-word similarity.

Rows are sketched by streaming the corpus, never holding text: each keeps its sorted distinct
content shingle hashes (top 32 bits) and, when asked, its sorted word hashes with template flags
(5 bytes a word). Verification runs in two passes to bound memory: content Jaccard for every
candidate pair, then word multisets only for the rows of pairs that passed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dedup.config import DedupConfig
from dedup.content import TemplateCounts, content_sketch
from dedup.corpus import Corpus
from dedup.minhash import run_chunks
from dedup.normalize import byte_lengths, normalize_arrow
from dedup.set_kernels import doc_sets, pair_scores
from dedup.sketch import chunk_starts

_PAIR_BLOCK = 65536


@dataclass(frozen=True)
class RowSketches:
    """Content sets and word multisets of `rows` (sorted corpus rows), as CSR arrays."""

    rows: np.ndarray
    c_off: np.ndarray
    c_hash: np.ndarray
    w_off: np.ndarray
    w_hash: np.ndarray
    w_template: np.ndarray

    def similarity(
        self, u: np.ndarray, v: np.ndarray, workers: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(content Jaccard, template similarity, missing words (k, 4)) of corpus rows u[k], v[k]
        (both in `rows`): `missing[k]` counts u's template words absent from v, v's absent from
        u, and the same for their other words."""
        lu, lv = np.searchsorted(self.rows, u), np.searchsorted(self.rows, v)
        content = np.zeros(len(u), dtype=np.float64)
        template = np.zeros(len(u), dtype=np.float64)
        missing = np.zeros((len(u), 4), dtype=np.int64)

        def work(lo: int) -> None:
            s = slice(lo, lo + _PAIR_BLOCK)
            words = (self.w_off, self.w_hash, self.w_template)
            pair_scores(lu[s], lv[s], (self.c_off, self.c_hash), words, content[s], template[s], missing[s])

        run_chunks(work, range(0, len(u), _PAIR_BLOCK), workers)
        return content, template, missing


def _concat_csr(offs: list[np.ndarray], vals: list[np.ndarray], dtype: type) -> tuple[np.ndarray, np.ndarray]:
    sizes = np.concatenate([np.diff(o) for o in offs]) if offs else np.empty(0, np.int64)
    off = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=off[1:])
    return off, np.concatenate(vals) if vals else np.empty(0, dtype)


def sketch_rows(
    corpus: Corpus, rows: np.ndarray, counts: TemplateCounts, cfg: DedupConfig, words: bool = True
) -> RowSketches:
    """Sketch the given corpus rows (sorted, distinct) in one streaming pass; `words`: with their
    word multisets (without, every pair's template similarity reads 1 and nothing is missing)."""
    settings = cfg.template_settings()
    parts: list[tuple] = []
    for lo, questions in corpus.arrow_batches():
        a, b = np.searchsorted(rows, [lo, lo + len(questions)])
        if b == a:
            continue
        local = rows[a:b] - lo
        texts = questions.take(local)
        starts = chunk_starts(byte_lengths(texts), cfg.chunk_size, cfg.chunk_bytes)
        ends = [*starts[1:], len(local)]
        task = corpus.task[rows[a:b]]
        out: list = [None] * len(starts)

        def work(ci: int, texts=texts, task=task, starts=starts, ends=ends, out=out) -> None:
            s, e = starts[ci], ends[ci]
            batch = normalize_arrow(texts.slice(s, e - s))
            cs = content_sketch(batch, task[s:e], counts, settings, multisets=words)
            h32 = (cs.content.hash64 >> np.uint64(32)).astype(np.uint32)
            c_off, c_hash = doc_sets(cs.content.doc, h32, cs.content.n_docs)
            if words:
                out[ci] = (c_off, c_hash, cs.word_offsets, cs.words, cs.template)
            else:
                none = np.zeros(e - s + 1, np.int64)
                out[ci] = (c_off, c_hash, none, np.empty(0, np.uint32), np.empty(0, bool))

        run_chunks(work, range(len(starts)), cfg.n_workers)
        parts += out
    c_off, c_hash = _concat_csr([p[0] for p in parts], [p[1] for p in parts], np.uint32)
    w_off, w_hash = _concat_csr([p[2] for p in parts], [p[3] for p in parts], np.uint32)
    w_template = np.concatenate([p[4] for p in parts]) if parts else np.empty(0, bool)
    return RowSketches(rows, c_off, c_hash, w_off, w_hash, w_template)
