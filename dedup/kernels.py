"""Compiled text loops of the dedup stage (numba, `nogil`, so chunks run in threads).

Each kernel makes one pass over a chunk's bytes, words or shingles where the numpy form would
need many corpus-sized temporaries. Hashes equal the numpy and pure-Python definitions in
`dedup.minhash` (`shingle_hash64`): a polynomial over a byte range from prefix sums, finished with
MurmurHash3's 64-bit mixer. All arithmetic is on uint64 and wraps. Kernels over sketches and
candidate pairs are in `dedup.set_kernels`.
"""

from __future__ import annotations

import numba as nb
import numpy as np

_U64 = np.uint64
_LEN_MIX = np.uint64(0xC2B2AE3D27D4EB4F)
_MASK32 = np.uint64(0xFFFFFFFF)
_MERSENNE = np.uint64((1 << 61) - 1)
_SPACE = np.uint8(32)

# (starts, ends, first, at_start, at_end, powers): word bounds, doc offsets and the hash prefix sums
# at each word's bounds (`dedup.minhash.Words`)
WordArrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


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
        after_space = True  # the document's start counts as one: no leading space
        for i in range(offsets[d], offsets[d + 1]):
            # branch-free: every byte is written, a space after a space (or the start) is overwritten
            c = lut[data[i]]
            space = c == _SPACE
            out[k] = c
            k += 1 - (space & after_space)
            after_space = space
        if k > start and out[k - 1] == _SPACE:
            k -= 1  # one trailing space
        out_off[d + 1] = k
    return out[:k], out_off  # no copy: normalizing removes only a few bytes


@nb.njit(cache=True, nogil=True)
def word_bounds(
    data: np.ndarray, offsets: np.ndarray, inv_powers: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(starts, ends, first word per doc, hash prefix sums at word starts, at word ends) of
    normalized text (single spaces; docs contiguous from byte 0)."""
    n_docs = len(offsets) - 1
    n_words = 0
    for d in range(n_docs):
        if offsets[d + 1] > offsets[d]:
            n_words += 1
    for i in range(len(data)):
        n_words += data[i] == _SPACE
    starts = np.empty(n_words, np.int64)
    ends = np.empty(n_words, np.int64)
    at_start = np.empty(n_words, np.uint64)
    at_end = np.empty(n_words, np.uint64)
    first = np.empty(n_docs + 1, np.int64)
    w = 0
    acc = _U64(0)  # the prefix sum before byte i, over the whole buffer
    for d in range(n_docs):
        first[d] = w
        a, b = offsets[d], offsets[d + 1]
        if b == a:
            continue
        starts[w] = a
        at_start[w] = acc
        for i in range(a, b):
            # branch-free: word w's end is rewritten at every byte until a space moves on to w + 1
            c = data[i]
            ends[w] = i
            at_end[w] = acc
            acc += (_U64(c) + _U64(1)) * inv_powers[i]
            w += c == _SPACE
        ends[w] = b
        at_end[w] = acc
        w += 1
    first[n_docs] = w
    space = _U64(_SPACE) + _U64(1)
    for d in range(n_docs):  # a later word of a doc starts one space after the word before
        for v in range(first[d] + 1, first[d + 1]):
            starts[v] = ends[v - 1] + 1
            at_start[v] = at_end[v - 1] + space * inv_powers[ends[v - 1]]
    return starts, ends, first, at_start, at_end


@nb.njit(cache=True, nogil=True, inline="always")
def _range_hash(
    starts: np.ndarray,
    ends: np.ndarray,
    at_start: np.ndarray,
    at_end: np.ndarray,
    powers: np.ndarray,
    fw: int,
    lw: int,
) -> np.uint64:
    e = ends[lw]
    h = powers[e - 1] * (at_end[lw] - at_start[fw])
    h += _U64(e - starts[fw]) * _LEN_MIX
    return fmix64(h)


@nb.njit(cache=True, nogil=True, inline="always")
def _spans(m: int, n: int) -> int:
    if m >= n:
        return m - n + 1
    return min(m, 1)


# a prompt's first or last L words (L < the template n-gram) are keyed apart from its n-grams
_PREFIX = np.uint64(0x5BD1E9955BD1E995)
_SUFFIX = np.uint64(0x27D4EB2F165667C5)


@nb.njit(cache=True, nogil=True, inline="always")
def _edge_hash(h: np.uint64, length: int, suffix: bool) -> np.uint64:
    return fmix64(h ^ ((_SUFFIX if suffix else _PREFIX) * _U64(length)))


@nb.njit(cache=True, nogil=True, inline="always")
def _key(h: np.uint64, salt: np.uint64) -> np.uint64:
    return fmix64(h ^ salt) | _U64(1)


@nb.njit(cache=True, nogil=True)
def template_keys(
    words: WordArrays,
    salt: np.ndarray,
    tn: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(key, doc, span): the distinct template keys of each doc, in first-occurrence order.

    A doc's spans are its tn-grams and its first and last L words for L < min(tn, its length)
    (templates begin and end with phrases shorter than tn words). A key is the span's hash
    mixed with the doc's task `salt`, its lowest bit set (so it is never 0); `span` is the hash
    unmixed, which names the span across tasks.
    """
    starts, ends, first, at_start, at_end, powers = words
    n_docs = len(first) - 1
    total = 0
    for d in range(n_docs):
        m = first[d + 1] - first[d]
        total += _spans(m, tn) + 2 * max(0, min(tn, m) - 1)
    out = np.empty(total, np.uint64)
    out_doc = np.empty(total, np.int64)
    out_span = np.empty(total, np.uint64)
    seen = np.zeros(16, np.uint64)  # per-doc open-addressing set, cleared slot by slot
    used = np.empty(16, np.int64)
    k = 0
    for d in range(n_docs):
        a, b = first[d], first[d + 1]
        m = b - a
        edges = max(0, min(tn, m) - 1)
        cnt = _spans(m, tn) + 2 * edges
        if 2 * cnt > len(seen):
            size = len(seen)
            while size < 2 * cnt:
                size *= 2
            seen = np.zeros(size, np.uint64)
            used = np.empty(size, np.int64)
        mask = _U64(len(seen) - 1)
        n_used = 0
        for j in range(cnt):
            if j < _spans(m, tn):
                h = _range_hash(starts, ends, at_start, at_end, powers, a + j, min(a + j + tn - 1, b - 1))
            elif j < _spans(m, tn) + edges:
                length = j - _spans(m, tn) + 1
                h = _edge_hash(
                    _range_hash(starts, ends, at_start, at_end, powers, a, a + length - 1), length, False
                )
            else:
                length = j - _spans(m, tn) - edges + 1
                h = _edge_hash(
                    _range_hash(starts, ends, at_start, at_end, powers, b - length, b - 1), length, True
                )
            key = _key(h, salt[d])
            i = key & mask
            while seen[i] != 0 and seen[i] != key:
                i = (i + _U64(1)) & mask
            if seen[i] == 0:
                seen[i] = key
                used[n_used] = i
                n_used += 1
                out[k] = key
                out_doc[k] = d
                out_span[k] = h
                k += 1
        for j in range(n_used):
            seen[used[j]] = 0
    return out[:k], out_doc[:k], out_span[:k]  # no copy: most spans of a doc are distinct


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


@nb.njit(cache=True, nogil=True, inline="always")
def _is_template(templates: np.ndarray, h: np.uint64, salt: np.uint64, shared_salt: np.uint64) -> bool:
    return _in_set(templates, _key(h, salt)) or _in_set(templates, _key(h, shared_salt))


@nb.njit(cache=True, nogil=True, inline="always")
def _is_number(data: np.ndarray, s: int, e: int) -> bool:
    # "15", "12th", "1990s", "$15", "+3": a digit first, or an ASCII sign or currency symbol
    # then a digit ("covid19" and "h2o" are words)
    if 48 <= data[s] <= 57:
        return True
    return e - s > 1 and data[s] < 128 and not _is_alnum(data[s]) and 48 <= data[s + 1] <= 57


@nb.njit(cache=True, nogil=True, inline="always")
def _is_alnum(c: np.uint8) -> bool:
    return (48 <= c <= 57) or (97 <= c <= 122) or (65 <= c <= 90)


@nb.njit(cache=True, nogil=True)
def content_shingles(
    words: WordArrays,
    data: np.ndarray,
    salt: np.ndarray,
    shared_salt: np.uint64,
    templates: np.ndarray,
    tn: int,
    n: int,
    edit_words: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(shingle doc, shingle hash, content words per doc, covered per word, numbers per doc).

    A word is covered (template) when a span holding it (a tn-gram, or the doc's first or last L
    words, as in `template_keys`) is in the `templates` key set (`key_set`; an empty array covers
    nothing) under the doc's task `salt` or `shared_salt`. Uncovered runs are content, except a
    run of at most `edit_words` words with covered words on both sides in the same doc; content
    runs give their word n-grams (a shorter run is one shingle). Numbers: a multiset hash (a sum
    of mixed word hashes, 0 for none) of the words that are numbers (`_is_number`; `data` is the
    normalized text the word bounds point into).
    """
    starts, ends, first, at_start, at_end, powers = words
    n_docs = len(first) - 1
    total = len(starts)
    covered = np.zeros(total, np.bool_)
    numbers = np.zeros(n_docs, np.uint64)
    use_table = len(templates) > 0
    for d in range(n_docs):
        a, b = first[d], first[d + 1]
        if not use_table or b == a:
            continue
        reach = a - 1
        for j in range(_spans(b - a, tn)):
            fw = a + j
            lw = min(fw + tn - 1, b - 1)
            h = _range_hash(starts, ends, at_start, at_end, powers, fw, lw)
            if _is_template(templates, h, salt[d], shared_salt):
                for w in range(max(fw, reach + 1), lw + 1):
                    covered[w] = True
                reach = max(reach, lw)
        for length in range(min(tn, b - a) - 1, 0, -1):
            h = _edge_hash(
                _range_hash(starts, ends, at_start, at_end, powers, a, a + length - 1), length, False
            )
            if _is_template(templates, h, salt[d], shared_salt):
                for w in range(a, a + length):
                    covered[w] = True
                break
        for length in range(min(tn, b - a) - 1, 0, -1):
            h = _range_hash(starts, ends, at_start, at_end, powers, b - length, b - 1)
            if _is_template(templates, _edge_hash(h, length, True), salt[d], shared_salt):
                for w in range(b - length, b):
                    covered[w] = True
                break
    sdoc = np.empty(total, np.int64)
    shash = np.empty(total, np.uint64)
    n_content = np.zeros(n_docs, np.int64)
    k = 0
    for d in range(n_docs):
        a, b = first[d], first[d + 1]
        for w in range(a, b):
            if _is_number(data, starts[w], ends[w]):
                numbers[d] += fmix64(_range_hash(starts, ends, at_start, at_end, powers, w, w))
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
                lw = min(r0 + j + n - 1, w - 1)
                shash[k] = _range_hash(starts, ends, at_start, at_end, powers, r0 + j, lw)
                k += 1
    return sdoc[:k].copy(), shash[:k].copy(), n_content, covered, numbers


@nb.njit(cache=True, nogil=True)
def word_keys(words: WordArrays, covered: np.ndarray) -> np.ndarray:
    """Per word: its doc (bits 33-63), the top 32 bits of its hash (bits 1-32), whether it is
    template (bit 0)."""
    starts, ends, first, at_start, at_end, powers = words
    packed = np.empty(len(starts), np.uint64)
    for d in range(len(first) - 1):
        for w in range(first[d], first[d + 1]):
            h = _range_hash(starts, ends, at_start, at_end, powers, w, w) >> _U64(32)
            packed[w] = (_U64(d) << _U64(33)) | (h << _U64(1)) | _U64(covered[w])
    return packed


def word_multisets(words: WordArrays, covered: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each doc's word hashes (top 32 bits), sorted within the doc, and whether each is template."""
    if len(words[2]) > 1 << 31:
        raise ValueError("word_multisets: at most 2^31 docs a chunk")
    # one (vectorised) sort of the chunk: the doc bits keep each doc's words in its own range
    packed = np.sort(word_keys(words, covered))
    return (packed >> _U64(1)).astype(np.uint32), (packed & _U64(1)).astype(np.bool_)
