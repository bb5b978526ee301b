"""Compiled loops over sketches and candidate pairs (numba, `nogil`): the template count-min table,
MinHash signatures, LSH band keys, per-row shingle sets, pair scores, star clusters and the LSH
bucket scan. Text kernels are in `dedup.kernels`."""

from __future__ import annotations

import numba as nb
import numpy as np

from dedup.kernels import _MASK32, _MERSENNE, _U64, _fmix32, fmix64


@nb.njit(cache=True, nogil=True, inline="always")
def _cells(key: np.uint64, blocks: np.uint64) -> tuple[np.uint64, np.uint64]:
    # both counters of a key sit in one 64-byte block: one cache miss per key, not two
    base = (key % blocks) * _U64(64)
    i = (key >> _U64(32)) & _U64(63)
    j = (key >> _U64(40)) & _U64(63)
    if j == i:
        j = i ^ _U64(1)
    return base + i, base + j


@nb.njit(cache=True, nogil=True)
def count_min_add(
    table: np.ndarray, keys: np.ndarray, task: np.ndarray, span: np.ndarray, cap: int, floor: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Add one to both counters of every key (saturating at `cap`), in order.

    `table` is a blocked count-min sketch: 64 one-byte counters per block, two per key. Returns
    the keys (with their tasks and spans) whose own insertion lifted their estimate to `floor`:
    every key that can reach a task's threshold is among them, each once (unless other keys
    lifted both its counters first, which a table sized to the keys makes rare).
    """
    blocks = _U64(len(table) // 64)
    out = np.empty(len(keys), np.uint64)
    out_task = np.empty(len(keys), np.int64)
    out_span = np.empty(len(keys), np.uint64)
    k = 0
    for n in range(len(keys)):
        key = keys[n]
        i, j = _cells(key, blocks)
        before = min(table[i], table[j])
        if table[i] < cap:
            table[i] += 1
        if table[j] < cap:
            table[j] += 1
        if before < floor <= min(table[i], table[j]):
            out[k] = key
            out_task[k] = task[n]
            out_span[k] = span[n]
            k += 1
    return out[:k].copy(), out_task[:k].copy(), out_span[:k].copy()


@nb.njit(cache=True, nogil=True)
def count_min_estimate(table: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """The estimate (the smaller of its two counters) of each key."""
    blocks = _U64(len(table) // 64)
    out = np.empty(len(keys), np.int64)
    for n in range(len(keys)):
        i, j = _cells(keys[n], blocks)
        out[n] = min(table[i], table[j])
    return out


@nb.njit(cache=True, nogil=True)
def minhash(
    doc: np.ndarray, h32: np.ndarray, a: np.ndarray, b: np.ndarray, n_docs: int, legacy: bool
) -> np.ndarray:
    """(n_docs, num_perm) uint32 MinHash signatures, datasketch's affine32 or legacy scheme."""
    num_perm = len(a)
    sig = np.full((n_docs, num_perm), np.uint32(0xFFFFFFFF), np.uint32)
    for i in range(len(doc)):
        row = sig[doc[i]]
        if legacy:
            hv = _U64(h32[i])
            for p in range(num_perm):
                v = np.uint32(((a[p] * hv + b[p]) % _MERSENNE) & _MASK32)
                if v < row[p]:
                    row[p] = v
        else:
            x = _fmix32(_U64(h32[i]))
            for p in range(num_perm):
                v = np.uint32((a[p] * x + b[p]) & _MASK32)
                if v < row[p]:
                    row[p] = v
    return sig


@nb.njit(cache=True, nogil=True)
def signature_bands(sig: np.ndarray, bands: int, rows: int, docs: np.ndarray) -> np.ndarray:
    """(len(docs), bands) uint64 key of each band's `rows` values of signature rows `docs`: the
    band's salt, then xor and multiply per value, finished with `fmix64`."""
    keys = np.empty((len(docs), bands), np.uint64)
    for i in range(len(docs)):
        row = sig[docs[i]]
        for b in range(bands):
            k = _U64(b + 1) * _U64(0x9E3779B97F4A7C15)
            for j in range(b * rows, (b + 1) * rows):
                k ^= _U64(row[j])
                k *= _U64(0xBF58476D1CE4E5B9)
            keys[i, b] = fmix64(k)
    return keys


@nb.njit(cache=True, nogil=True, inline="always")
def _run(hashes: np.ndarray, flags: np.ndarray, i: int, end: int, h: np.uint32) -> tuple[int, int, int]:
    """(index after, length, flagged count) of the run of `h` from `i` in sorted `hashes[:end]`."""
    n = 0
    flagged = 0
    while i < end and hashes[i] == h:
        n += 1
        flagged += flags[i]
        i += 1
    return i, n, flagged


@nb.njit(cache=True, nogil=True)
def pair_scores(
    u: np.ndarray,
    v: np.ndarray,
    content_sets: tuple[np.ndarray, np.ndarray],
    word_sets: tuple[np.ndarray, np.ndarray, np.ndarray],
    content: np.ndarray,
    template: np.ndarray,
    missing: np.ndarray,
) -> None:
    """Content Jaccard, template similarity and missing template words of local docs u[k], v[k].

    Content: `(offsets, hashes)`, the sorted distinct shingle hashes per doc (CSR). Over
    `(offsets, hashes, template flags)`, each doc's sorted word hashes (CSR): `missing[k]` holds
    the template words of u missing from v's words (as multisets), the converse, and the same two
    counts of the other words; template similarity is 1 - the template counts / the larger
    template.
    """
    c_off, c_hash = content_sets
    w_off, w_hash, w_template = word_sets
    for k in range(len(u)):
        x, y = u[k], v[k]
        i, ie, j, je = c_off[x], c_off[x + 1], c_off[y], c_off[y + 1]
        na, nb_ = ie - i, je - j
        inter = 0
        while i < ie and j < je:
            if c_hash[i] == c_hash[j]:
                inter += 1
                i += 1
                j += 1
            elif c_hash[i] < c_hash[j]:
                i += 1
            else:
                j += 1
        union = na + nb_ - inter
        content[k] = inter / union if union > 0 else 0.0
        i, ie, j, je = w_off[x], w_off[x + 1], w_off[y], w_off[y + 1]
        tu = 0
        tv = 0
        mu = 0
        mv = 0
        xu = 0
        xv = 0
        while i < ie or j < je:
            h = w_hash[i] if j >= je or (i < ie and w_hash[i] < w_hash[j]) else w_hash[j]
            i, cu, tcu = _run(w_hash, w_template, i, ie, h)
            j, cv, tcv = _run(w_hash, w_template, j, je, h)
            tu += tcu
            tv += tcv
            mu += max(0, tcu - cv)
            mv += max(0, tcv - cu)
            xu += max(0, cu - cv) - max(0, tcu - cv)
            xv += max(0, cv - cu) - max(0, tcv - cu)
        larger = max(tu, tv, 1)
        template[k] = 1.0 - min((mu + mv) / larger, 1.0)
        missing[k, 0] = mu
        missing[k, 1] = mv
        missing[k, 2] = xu
        missing[k, 3] = xv


@nb.njit(cache=True, nogil=True)
def star_clusters(n: int, a: np.ndarray, b: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Greedy clusters without chains: rows in index order, each joins its best-scored linked row
    of a smaller index that is kept (ties: the smallest index), else it is kept. Edges (a[k] <
    b[k]) must be sorted by b. Returns each row's kept row (itself when kept)."""
    target = np.arange(n, dtype=np.int64)
    best = np.full(n, -1.0)
    k = 0
    while k < len(b):
        row = b[k]
        while k < len(b) and b[k] == row:
            other = a[k]
            if target[other] == other and (
                score[k] > best[row] or (score[k] == best[row] and other < target[row])
            ):
                best[row] = score[k]
                target[row] = other
            k += 1
    return target


@nb.njit(cache=True, nogil=True)
def doc_sets(doc: np.ndarray, hashes: np.ndarray, n_docs: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR of each doc's distinct hashes, sorted (`doc` non-decreasing)."""
    off = np.zeros(n_docs + 1, np.int64)
    for d in doc:
        off[d + 1] += 1
    for d in range(n_docs):
        off[d + 1] += off[d]
    out = hashes.copy()
    k = 0
    for d in range(n_docs):
        a, b = off[d], off[d + 1]
        part = np.sort(out[a:b])
        off[d] = k
        for j in range(len(part)):
            if j == 0 or part[j] != part[j - 1]:
                out[k] = part[j]
                k += 1
    off[n_docs] = k
    return off, out[:k].copy()


@nb.njit(cache=True, nogil=True)
def band_pairs(order: np.ndarray, bounds: np.ndarray, total: int) -> np.ndarray:
    """Pairs of positions in the same bucket, as `u * len(order) + v` with u < v.

    `order` is an argsort of one band's keys (in any order inside a bucket) and bucket k is
    `order[bounds[k]:bounds[k + 1]]`. A bucket of up to 16 positions gives all its pairs; a
    larger one a star from its smallest position (enough for union-find, and linear in the
    bucket). `total` is the number of pairs this makes.
    """
    m = len(order)
    out = np.empty(total, np.int64)
    k = 0
    for g in range(len(bounds) - 1):
        i, j = bounds[g], bounds[g + 1]
        if j - i <= 16:
            for a in range(i, j):
                for b in range(a + 1, j):
                    out[k] = min(order[a], order[b]) * m + max(order[a], order[b])
                    k += 1
        else:
            root = order[i]
            for b in range(i + 1, j):
                root = min(root, order[b])
            for b in range(i, j):
                if order[b] != root:
                    out[k] = root * m + order[b]
                    k += 1
    return out
