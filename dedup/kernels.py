"""Compiled loops of the dedup stage (numba, `nogil`, so chunks run in threads).

Each kernel makes one pass over a chunk's bytes, words or shingles where the numpy form would
need many corpus-sized temporaries. Hashes equal the numpy and pure-Python definitions in
`dedup.minhash` (`shingle_hash64`): a polynomial over a byte range from prefix sums, finished with
MurmurHash3's 64-bit mixer. All arithmetic is on uint64 and wraps.
"""

from __future__ import annotations

import numba as nb
import numpy as np

_U64 = np.uint64
_LEN_MIX = np.uint64(0xC2B2AE3D27D4EB4F)
_MASK32 = np.uint64(0xFFFFFFFF)
_MERSENNE = np.uint64((1 << 61) - 1)
_SPACE = np.uint8(32)


@nb.njit(cache=True, nogil=True, inline="always")
def fmix64(x: np.uint64) -> np.uint64:
    """MurmurHash3's 64-bit finalizer."""
    x ^= x >> _U64(33)
    x *= _U64(0xFF51AFD7ED558CCD)
    x ^= x >> _U64(33)
    x *= _U64(0xC4CEB9FE1A85EC53)
    x ^= x >> _U64(33)
    return x


@nb.njit(cache=True, nogil=True, inline="always")
def _fmix32(h: np.uint64) -> np.uint64:
    x = h
    x ^= x >> _U64(16)
    x = (x * _U64(0x85EBCA6B)) & _MASK32
    x ^= x >> _U64(13)
    x = (x * _U64(0xC2B2AE35)) & _MASK32
    x ^= x >> _U64(16)
    return x


@nb.njit(cache=True, nogil=True)
def collapse(data: np.ndarray, offsets: np.ndarray, lut: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map bytes through `lut` and collapse each document's space runs to single inner spaces."""
    out = np.empty(len(data), np.uint8)
    out_off = np.empty(len(offsets), np.int64)
    out_off[0] = 0
    k = 0
    for d in range(len(offsets) - 1):
        start = k
        pending = False
        for i in range(offsets[d], offsets[d + 1]):
            c = lut[data[i]]
            if c == _SPACE:
                pending = k > start
            else:
                if pending:
                    out[k] = _SPACE
                    k += 1
                    pending = False
                out[k] = c
                k += 1
        out_off[d + 1] = k
    return out[:k].copy(), out_off


@nb.njit(cache=True, nogil=True)
def word_bounds(
    data: np.ndarray, offsets: np.ndarray, inv_powers: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(starts, ends, first word per doc, hash prefix sums) of normalized text (single spaces)."""
    n_docs = len(offsets) - 1
    n_words = 0
    for d in range(n_docs):
        if offsets[d + 1] > offsets[d]:
            n_words += 1
    for i in range(len(data)):
        if data[i] == _SPACE:
            n_words += 1
    starts = np.empty(n_words, np.int64)
    ends = np.empty(n_words, np.int64)
    first = np.empty(n_docs + 1, np.int64)
    w = 0
    for d in range(n_docs):
        first[d] = w
        a, b = offsets[d], offsets[d + 1]
        if b == a:
            continue
        starts[w] = a
        for i in range(a, b):
            if data[i] == _SPACE:
                ends[w] = i
                w += 1
                starts[w] = i + 1
        ends[w] = b
        w += 1
    first[n_docs] = w
    prefix = np.empty(len(data) + 1, np.uint64)
    acc = _U64(0)
    prefix[0] = acc
    for i in range(len(data)):
        acc += (_U64(data[i]) + _U64(1)) * inv_powers[i]
        prefix[i + 1] = acc
    return starts, ends, first, prefix


@nb.njit(cache=True, nogil=True, inline="always")
def _range_hash(
    starts: np.ndarray, ends: np.ndarray, prefix: np.ndarray, powers: np.ndarray, fw: int, lw: int
) -> np.uint64:
    s = starts[fw]
    e = ends[lw]
    h = powers[e - 1] * (prefix[e] - prefix[s])
    h += _U64(e - s) * _LEN_MIX
    return fmix64(h)


@nb.njit(cache=True, nogil=True, inline="always")
def _spans(m: int, n: int) -> int:
    if m >= n:
        return m - n + 1
    return min(m, 1)


@nb.njit(cache=True, nogil=True)
def template_keys(
    starts: np.ndarray,
    ends: np.ndarray,
    first: np.ndarray,
    prefix: np.ndarray,
    powers: np.ndarray,
    salt: np.ndarray,
    tn: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(key, doc): the distinct keys of each doc's tn-grams, in first-occurrence order.

    A key is the n-gram hash mixed with the doc's `salt`, its lowest bit set (so it is never 0).
    """
    n_docs = len(first) - 1
    total = 0
    for d in range(n_docs):
        total += _spans(first[d + 1] - first[d], tn)
    out = np.empty(total, np.uint64)
    out_doc = np.empty(total, np.int64)
    seen = np.zeros(16, np.uint64)  # per-doc open-addressing set, cleared slot by slot
    used = np.empty(16, np.int64)
    k = 0
    for d in range(n_docs):
        a, b = first[d], first[d + 1]
        cnt = _spans(b - a, tn)
        if 2 * cnt > len(seen):
            size = len(seen)
            while size < 2 * cnt:
                size *= 2
            seen = np.zeros(size, np.uint64)
            used = np.empty(size, np.int64)
        mask = _U64(len(seen) - 1)
        n_used = 0
        for j in range(cnt):
            lw = min(a + j + tn - 1, b - 1)
            key = fmix64(_range_hash(starts, ends, prefix, powers, a + j, lw) ^ salt[d]) | _U64(1)
            i = key & mask
            while seen[i] != 0 and seen[i] != key:
                i = (i + _U64(1)) & mask
            if seen[i] == 0:
                seen[i] = key
                used[n_used] = i
                n_used += 1
                out[k] = key
                out_doc[k] = d
                k += 1
        for j in range(n_used):
            seen[used[j]] = 0
    return out[:k].copy(), out_doc[:k].copy()


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
    table: np.ndarray, keys: np.ndarray, task: np.ndarray, cap: int, floor: int
) -> tuple[np.ndarray, np.ndarray]:
    """Add one to both counters of every key (saturating at `cap`), in order.

    `table` is a blocked count-min sketch: 64 one-byte counters per block, two per key. Returns
    the keys (and their tasks) whose own insertion lifted their estimate to `floor`: every key
    that can reach a task's threshold is among them, each once.
    """
    blocks = _U64(len(table) // 64)
    out = np.empty(len(keys), np.uint64)
    out_task = np.empty(len(keys), np.int64)
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
            k += 1
    return out[:k].copy(), out_task[:k].copy()


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
def key_set(keys: np.ndarray) -> np.ndarray:
    """Open-addressing hash set of uint64 keys, none 0 (a power-of-two table, 0 = empty)."""
    size = 16
    while size < 2 * len(keys):
        size *= 2
    table = np.zeros(size, np.uint64)
    mask = _U64(size - 1)
    for key in keys:
        i = key & mask
        while table[i] != 0 and table[i] != key:
            i = (i + _U64(1)) & mask
        table[i] = key
    return table


@nb.njit(cache=True, nogil=True, inline="always")
def _in_set(table: np.ndarray, key: np.uint64) -> bool:
    mask = _U64(len(table) - 1)
    i = key & mask
    while table[i] != 0:
        if table[i] == key:
            return True
        i = (i + _U64(1)) & mask
    return False


@nb.njit(cache=True, nogil=True)
def content_shingles(
    starts: np.ndarray,
    ends: np.ndarray,
    first: np.ndarray,
    prefix: np.ndarray,
    powers: np.ndarray,
    salt: np.ndarray,
    templates: np.ndarray,
    tn: int,
    n: int,
    edit_words: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(shingle doc, shingle hash, content words per doc, covered per word) of every doc.

    A word is covered (template) when a tn-gram holding it, keyed with the doc's `salt`, is in the
    `templates` key set (`key_set`; an empty array covers nothing). Uncovered runs are content, except a
    run of at most `edit_words` words with covered words on both sides in the same doc; content
    runs give their word n-grams (a shorter run is one shingle).
    """
    n_docs = len(first) - 1
    total = len(starts)
    covered = np.zeros(total, np.bool_)
    use_table = len(templates) > 0
    for d in range(n_docs):
        a, b = first[d], first[d + 1]
        if not use_table or b == a:
            continue
        reach = a - 1
        for j in range(_spans(b - a, tn)):
            fw = a + j
            lw = min(fw + tn - 1, b - 1)
            key = fmix64(_range_hash(starts, ends, prefix, powers, fw, lw) ^ salt[d]) | _U64(1)
            if _in_set(templates, key):
                for w in range(max(fw, reach + 1), lw + 1):
                    covered[w] = True
                reach = max(reach, lw)
    sdoc = np.empty(total, np.int64)
    shash = np.empty(total, np.uint64)
    n_content = np.zeros(n_docs, np.int64)
    k = 0
    for d in range(n_docs):
        a, b = first[d], first[d + 1]
        w = a
        while w < b:
            if covered[w]:
                w += 1
                continue
            r0 = w
            while w < b and not covered[w]:
                w += 1
            length = w - r0
            if length <= edit_words and r0 > a and w < b:
                continue  # covered on both sides: an edit inside the template
            n_content[d] += length
            for j in range(_spans(length, n)):
                sdoc[k] = d
                shash[k] = _range_hash(starts, ends, prefix, powers, r0 + j, min(r0 + j + n - 1, w - 1))
                k += 1
    return sdoc[:k].copy(), shash[:k].copy(), n_content, covered


@nb.njit(cache=True, nogil=True)
def word_multisets(
    starts: np.ndarray,
    ends: np.ndarray,
    first: np.ndarray,
    prefix: np.ndarray,
    powers: np.ndarray,
    covered: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Each doc's word hashes (top 32 bits), sorted within the doc, and whether each is template."""
    total = len(starts)
    packed = np.empty(total, np.uint64)
    for w in range(total):
        h = _range_hash(starts, ends, prefix, powers, w, w) >> _U64(32)
        packed[w] = (h << _U64(1)) | _U64(covered[w])
    for d in range(len(first) - 1):
        packed[first[d] : first[d + 1]].sort()
    hashes = np.empty(total, np.uint32)
    template = np.empty(total, np.bool_)
    for w in range(total):
        hashes[w] = np.uint32(packed[w] >> _U64(1))
        template[w] = (packed[w] & _U64(1)) == _U64(1)
    return hashes, template


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
def pair_scores(
    u: np.ndarray,
    v: np.ndarray,
    c_off: np.ndarray,
    c_hash: np.ndarray,
    w_off: np.ndarray,
    w_hash: np.ndarray,
    w_template: np.ndarray,
    content: np.ndarray,
    template: np.ndarray,
) -> None:
    """Content Jaccard and template similarity of local docs u[k], v[k].

    Content: sorted distinct shingle hashes per doc (`c_off` CSR). Template similarity:
    1 - (template words of u missing from v's words + the converse) / the larger template, over
    each doc's sorted word hashes with their template flags (`w_off` CSR).
    """
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
        missing = 0
        while i < ie or j < je:
            h = w_hash[i] if j >= je or (i < ie and w_hash[i] < w_hash[j]) else w_hash[j]
            cu = 0
            tcu = 0
            while i < ie and w_hash[i] == h:
                cu += 1
                tcu += w_template[i]
                i += 1
            cv = 0
            tcv = 0
            while j < je and w_hash[j] == h:
                cv += 1
                tcv += w_template[j]
                j += 1
            tu += tcu
            tv += tcv
            missing += max(0, tcu - cv) + max(0, tcv - cu)
        larger = max(tu, tv, 1)
        template[k] = 1.0 - min(missing / larger, 1.0)


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

    `order` is a stable argsort of one band's keys (positions ascend inside a bucket) and bucket
    k is `order[bounds[k]:bounds[k + 1]]`. A bucket of up to 16 positions gives all its pairs; a
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
                    out[k] = order[a] * m + order[b]
                    k += 1
        else:
            for b in range(i + 1, j):
                out[k] = order[i] * m + order[b]
                k += 1
    return out
