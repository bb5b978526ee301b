"""Exact similarity of candidate pairs: content shingle Jaccard and template-word Jaccard."""

from __future__ import annotations

import numpy as np

from dedup.config import DedupConfig
from dedup.content import TemplateCounts, content_sketch
from dedup.corpus import Corpus
from dedup.lsh import jaccard, set_overlaps
from dedup.minhash import Shingles, run_chunks
from dedup.normalize import normalize_batch

_BLOCK = 4096  # pairs per block: at most 8192 documents re-sketched at once


def template_similarity(template: Shingles, words: Shingles, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """1 - (template words of u missing from v's words + the converse) / the larger template.

    Word multisets: a light edit inside a template costs about one word per edit, even where it
    leaves too few intact n-grams for the template to be recognised in the edited copy; a template
    variant misses whole sentences. Two prompts without template words have similarity 1.
    """
    m = template.n_docs
    both = Shingles(
        np.concatenate([template.doc, words.doc + m]), np.concatenate([template.hash64, words.hash64]), 2 * m
    )
    in_v, tu, _ = set_overlaps(both, u, v + m)
    in_u, tv, _ = set_overlaps(both, v, u + m)
    missing = (tu - in_v) + (tv - in_u)
    larger = np.maximum(np.maximum(tu, tv), 1)
    return 1.0 - np.minimum(missing / larger, 1.0)


def pair_similarity(
    corpus: Corpus, counts: TemplateCounts, cfg: DedupConfig, u: np.ndarray, v: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(content Jaccard, template similarity) of rows u[k], v[k], from their texts."""
    content = np.zeros(len(u), dtype=np.float64)
    template = np.zeros(len(u), dtype=np.float64)
    if not len(u):
        return content, template
    rows = np.unique(np.concatenate([u, v]))
    texts = corpus.texts(rows)
    settings = cfg.template_settings()

    def work(lo: int) -> None:
        bu, bv = u[lo : lo + _BLOCK], v[lo : lo + _BLOCK]
        docs = np.unique(np.concatenate([bu, bv]))
        sub = texts.gather(np.searchsorted(rows, docs)).to_list()
        cs = content_sketch(normalize_batch(sub), corpus.task[docs], counts, settings)
        lu, lv = np.searchsorted(docs, bu), np.searchsorted(docs, bv)
        content[lo : lo + _BLOCK] = jaccard(*set_overlaps(cs.content, lu, lv))
        template[lo : lo + _BLOCK] = template_similarity(cs.template, cs.all_words, lu, lv)

    run_chunks(work, range(0, len(u), _BLOCK), cfg.n_workers)
    return content, template
