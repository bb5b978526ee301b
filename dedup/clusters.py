"""Near-duplicate clusters: LSH candidates, each verified, judged, then grouped without chains.

A candidate pair is judged on the two prompts' own content (dedup/content.py):

- similar: content shingle Jaccard at or above `threshold`;
- the same numbers: the numbers outside the template are part of what a prompt asks, so two
  prompts whose numbers differ are different examples (`numbers: distinct`, the default; `merge`
  judges them on their words alone). Such pairs are counted either way;
- the same template or another: a near duplicate lacks at most a light edit's worth of the other's
  template words (`template_diff_words`, or `template_diff_share` of the larger template), and on
  one side only. Template words missing on both sides, or more of them, make a `template_variant`: the
  same content under another template, merged only with `template_variants: merge`.

A row with fewer than `min_content_words` words of own content has too little to tell an edit
from another example (a five-word question whose "What is the" is template, an instance of one
token: "(D)", "Sentence A", "yes"): it is a near duplicate only of a row with the very same
content whose template differs by one word (a substitution, insertion or deletion: one side lacks
at most one template word and no other word), and never a template variant. FLAN has templates
that differ by a phrase ("Come up with a question and [stream of consciousness] reasoning ...").

Clusters are stars: rows in id order, each joins the most similar linked row of a smaller id that
is kept, else it is kept. Every removed row is therefore linked to its kept row directly, at or
above the threshold (union-find would chain A~B and B~C into one cluster with A and C unlike).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dedup.config import DedupConfig
from dedup.content import TemplateCounts
from dedup.corpus import ONE_PASS_ROWS, Corpus
from dedup.lsh import bucket_pairs
from dedup.minhash import run_chunks
from dedup.set_kernels import star_clusters
from dedup.sketch import Sketch
from dedup.verify import sketch_rows

NEAR, VARIANT = 1, 2


@dataclass(frozen=True)
class NearClusters:
    """The kept row of every candidate row and the link that decided it."""

    rows: np.ndarray  # candidate corpus rows (sorted)
    target: np.ndarray  # per candidate: its kept corpus row (itself when kept)
    kind: np.ndarray  # per candidate: 0 kept, NEAR or VARIANT
    content: np.ndarray  # per candidate: content Jaccard with its kept row (nan when kept)
    template: np.ndarray  # per candidate: template similarity with its kept row (nan when kept)
    candidate_pairs: int
    verified_pairs: int  # content at or above the threshold
    number_pairs: int  # verified pairs whose numbers differ
    variant_pairs: int  # verified pairs (same numbers) under another template
    variants_found: int  # rows `template_variants: merge` removes as variants


def candidate_rows(sk: Sketch, active: np.ndarray) -> np.ndarray:
    """Rows judged for near duplicates: active, with some content."""
    return np.flatnonzero(active & (sk.n_content > 0))


def lsh_pairs(sk: Sketch, cand: np.ndarray, workers: int) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs (indices into `cand`, u < v) from LSH, one band at a time per thread."""
    m = np.int64(len(cand))
    found: list[np.ndarray] = [np.empty(0, np.int64)] * sk.bands

    def work(b: int) -> None:
        found[b] = bucket_pairs(sk.band(b)[cand])  # one int64 per pair: u * m + v

    run_chunks(work, range(sk.bands), workers)
    pairs = np.unique(np.concatenate(found)) if found else np.empty(0, np.int64)
    u, v = pairs // m, pairs % m
    return np.minimum(u, v), np.maximum(u, v)


def verify_pairs(
    corpus: Corpus, counts: TemplateCounts, cfg: DedupConfig, cu: np.ndarray, cv: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Content Jaccard of every pair; template similarity and missing template words of the pairs
    at or above the threshold (word multisets are read only for their rows, unless few)."""
    rows = np.unique(np.concatenate([cu, cv]))
    template = np.zeros(len(cu))
    missing = np.zeros((len(cu), 4), dtype=np.int64)
    if len(rows) <= ONE_PASS_ROWS:
        content, template, missing = sketch_rows(corpus, rows, counts, cfg).similarity(cu, cv, cfg.n_workers)
        return content, template, missing
    content = sketch_rows(corpus, rows, counts, cfg, words=False).similarity(cu, cv, cfg.n_workers)[0]
    match = content >= cfg.threshold
    rs = sketch_rows(corpus, np.unique(np.concatenate([cu[match], cv[match]])), counts, cfg)
    _, template[match], missing[match] = rs.similarity(cu[match], cv[match], cfg.n_workers)
    return content, template, missing


def judge(
    corpus: Corpus,
    sk: Sketch,
    cfg: DedupConfig,
    cu: np.ndarray,
    cv: np.ndarray,
    content: np.ndarray,
    missing: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(kind per pair: 0, NEAR or VARIANT; whether the pair's numbers differ)."""
    similar = content >= cfg.threshold
    other_numbers = similar & (sk.numbers[cu] != sk.numbers[cv])
    same = similar & ~other_numbers if cfg.numbers == "distinct" else similar
    template_words = np.maximum(
        sk.n_words[cu] - sk.n_content_words[cu], sk.n_words[cv] - sk.n_content_words[cv]
    )
    allowed = np.maximum(cfg.template_diff_words, np.ceil(cfg.template_diff_share * template_words))
    light = (missing[:, :2].min(axis=1) == 0) & (missing[:, :2].max(axis=1) <= allowed)
    light &= corpus.template_type[cu] == corpus.template_type[cv]
    # too little content to judge: only the same content under a light edit of the template, the
    # words one side lacks all template words (two one-word instances differ in a non-template word)
    short = np.minimum(sk.n_content_words[cu], sk.n_content_words[cv]) < cfg.min_content_words
    edit_only = (content >= 1.0) & (missing[:, 2:].min(axis=1) == 0) & (missing[:, :2].max(axis=1) <= 1)
    kind = np.where(same & light & (~short | edit_only), NEAR, np.where(same & ~short, VARIANT, 0))
    return kind.astype(np.int8), other_numbers


def _stars(n: int, u: np.ndarray, v: np.ndarray, score: np.ndarray) -> np.ndarray:
    order = np.lexsort((u, v))
    return star_clusters(n, u[order], v[order], score[order])


def near_clusters(
    corpus: Corpus, sk: Sketch, counts: TemplateCounts, cfg: DedupConfig, cand: np.ndarray
) -> NearClusters:
    """Judge every LSH candidate pair among `cand` and cluster the rows (see the module doc)."""
    u, v = lsh_pairs(sk, cand, cfg.n_workers)
    cu, cv = cand[u], cand[v]
    content, template, missing = verify_pairs(corpus, counts, cfg, cu, cv)
    kind, other_numbers = judge(corpus, sk, cfg, cu, cv, content, missing)
    n = len(cand)
    merge = cfg.template_variants == "merge"
    linked = kind > 0 if merge else kind == NEAR
    local = _stars(n, u[linked], v[linked], content[linked])
    with_variants = local if merge else _stars(n, u[kind > 0], v[kind > 0], content[kind > 0])
    # the link each removed row joined by: (kept, row) is one of the linked pairs
    key = u * n + v
    order = np.argsort(key)
    removed = np.flatnonzero(local != np.arange(n))
    at = order[np.searchsorted(key[order], local[removed] * n + removed)]
    row_kind = np.zeros(n, dtype=np.int8)
    row_content = np.full(n, np.nan)
    row_template = np.full(n, np.nan)
    row_kind[removed], row_content[removed], row_template[removed] = kind[at], content[at], template[at]
    moved = np.flatnonzero(with_variants != np.arange(n))
    variants_found = int(
        (kind[order[np.searchsorted(key[order], with_variants[moved] * n + moved)]] == VARIANT).sum()
    )
    return NearClusters(
        rows=cand,
        target=cand[local],
        kind=row_kind,
        content=row_content,
        template=row_template,
        candidate_pairs=len(u),
        verified_pairs=int((content >= cfg.threshold).sum()),
        number_pairs=int(other_numbers.sum()),
        variant_pairs=int((kind == VARIANT).sum()),
        variants_found=variants_found,
    )
