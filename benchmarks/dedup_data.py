"""Benchmark corpora for `python -m benchmarks.dedup`, with their ground truth and scoring.

- `make_corpus`: the earlier synthetic corpus (templates around Zipf passages; near duplicates at
  whole-text 5-gram Jaccard >= 0.85), kept so the change of method stays visible.
- `make_template_corpus`: long task templates around short instances, as in real FLAN prompts;
  near duplicates whose true content Jaccard (word 3-grams of the instances) spans 0.6-1.0, each
  with a few edits inside the template too; every row knows its example (`group`).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable

import numpy as np
import polars as pl

SEED = 20231101
_PUNCT = re.compile(r"[^\w\s]")


def _vocab(rng: np.random.Generator, size: int) -> np.ndarray:
    syll = [
        "ka",
        "lo",
        "mi",
        "ter",
        "an",
        "bus",
        "ze",
        "ro",
        "vin",
        "dal",
        "pe",
        "su",
        "gor",
        "ith",
        "ne",
        "qua",
    ]
    words = {"".join(rng.choice(syll, size=rng.integers(1, 4))) + str(i % 97) for i in range(size)}
    return np.array(sorted(words))


def _words(rng: np.random.Generator, vocab: np.ndarray, k: int) -> list[str]:
    ranks = rng.zipf(1.2, size=k) % len(vocab)
    return vocab[ranks].tolist()


def _templates(rng: np.random.Generator, vocab: np.ndarray, count: int) -> list[tuple[str, str]]:
    out = []
    for _ in range(count):
        p = " ".join(_words(rng, vocab, int(rng.integers(8, 40))))
        s = " ".join(_words(rng, vocab, int(rng.integers(4, 30))))
        out.append((f"Read the text and answer. {p}. Text:", f"Question: {s}? Answer:"))
    return out


def _exact_variant(rng: np.random.Generator, text: str) -> str:
    words = text.split(" ")
    out = []
    for w in words:
        r = rng.random()
        w = w.upper() if r < 0.1 else w.capitalize() if r < 0.2 else w
        out.append(w + ("," if rng.random() < 0.05 else ""))
    return "  ".join(out) + ("!" if rng.random() < 0.5 else " ")


def _shingle_set(text: str, n: int = 5) -> set[str]:
    words = _PUNCT.sub(" ", unicodedata.normalize("NFKC", text).casefold()).split()
    if len(words) < n:
        return {" ".join(words)}
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


def _near_variant(rng: np.random.Generator, vocab: np.ndarray, text: str) -> str | None:
    words = text.split(" ")
    edits = max(1, int(0.012 * len(words)))
    for _ in range(edits):
        i = int(rng.integers(len(words)))
        words[i] = str(vocab[int(rng.integers(len(vocab)))])
    out = " ".join(words)
    a, b = _shingle_set(text), _shingle_set(out)
    return out if len(a & b) / len(a | b) >= 0.85 else None


def make_corpus(n: int, seed: int = SEED) -> pl.DataFrame:
    """FLAN-like prompts with planted duplicate groups; `group` is -1 for unique rows."""
    rng = np.random.default_rng(seed)
    vocab = _vocab(rng, 30000)
    templates = _templates(rng, vocab, 60)
    questions: list[str] = []
    groups: list[int] = []
    kinds: list[str] = []
    group = 0
    while len(questions) < n:
        pre, suf = templates[int(rng.integers(len(templates)))]
        passage = " ".join(_words(rng, vocab, int(rng.integers(12, 220))))
        base = f"{pre} {passage} {suf}"
        r = rng.random()
        copies: list[tuple[str, str]] = []
        if r < 0.08:
            copies = [(_exact_variant(rng, base), "exact") for _ in range(int(rng.integers(1, 3)))]
        elif r < 0.16 and len(base.split()) >= 80:
            for _ in range(int(rng.integers(1, 3))):
                v = _near_variant(rng, vocab, base)
                if v is not None:
                    copies.append((v, "near"))
        gid = group if copies else -1
        group += bool(copies)
        for text, kind in [(base, "base"), *copies]:
            questions.append(text)
            groups.append(gid)
            kinds.append(kind)
    questions, groups, kinds = questions[:n], groups[:n], kinds[:n]
    ids = [hashlib.sha256(f"bench|{i}".encode()).hexdigest()[:24] for i in range(n)]
    return pl.DataFrame({"id": ids, "question": questions, "group": groups, "kind": kinds})


BANDS = ((0.6, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 1.01))


def bench_ids(prefix: str, n: int) -> list[str]:
    """`n` stable 24-hex ids for benchmark rows."""
    return [hashlib.sha256(f"{prefix}|{i}".encode()).hexdigest()[:24] for i in range(n)]


def content_jaccard(a: str, b: str, n: int = 3) -> float:
    """Jaccard of the word n-gram sets of two texts (the benchmarks' ground truth)."""
    sa, sb = _shingle_set(a, n), _shingle_set(b, n)
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


def edit_words(
    rng: np.random.Generator,
    words: list[str],
    vocab: np.ndarray,
    k: int,
    editable: Callable[[str], bool] | None = None,
) -> list[str]:
    """`k` random substitutions, insertions or deletions at uniformly drawn positions (of the
    words `editable` accepts, when given)."""
    return tracked_edit(rng, words, vocab, k, editable)[0]


def tracked_edit(
    rng: np.random.Generator,
    words: list[str],
    vocab: np.ndarray,
    k: int,
    editable: Callable[[str], bool] | None = None,
) -> tuple[list[str], list[int], list[bool]]:
    """`edit_words` (the same draws) with, for each word of the result, the index of the original
    word it is or replaces (an insertion: of the word it went before) and whether it is new."""
    words, origin, new = list(words), list(range(len(words))), [False] * len(words)
    for _ in range(k):
        op = rng.integers(3)
        if editable is None:
            i = int(rng.integers(len(words)))
        else:
            free = [j for j, w in enumerate(words) if editable(w)]
            if not free:
                break
            i = free[int(rng.integers(len(free)))]
        if op == 0:
            words[i], new[i] = str(vocab[int(rng.integers(len(vocab)))]), True
        elif op == 1:
            words.insert(i, str(vocab[int(rng.integers(len(vocab)))]))
            origin.insert(i, origin[i])
            new.insert(i, True)
        elif len(words) > 1:
            del words[i], origin[i], new[i]
    return words, origin, new


def make_template_corpus(n: int, seed: int = SEED, tasks: int = 400) -> pl.DataFrame:
    """Long templates (60-200 words) around short instances (6-40 words), planted near duplicates.

    Columns: id, question, task_name, instance (the instance text), group (the example: equal for
    a planted copy and its original), kind (base | near), true_jaccard (copy vs original instance).
    """
    rng = np.random.default_rng(seed)
    vocab = _vocab(rng, 30000)
    heads = [" ".join(_words(rng, vocab, int(rng.integers(50, 180)))) for _ in range(tasks)]
    tails = [" ".join(_words(rng, vocab, int(rng.integers(5, 20)))) for _ in range(tasks)]
    n_base = int(n / 1.1)
    task = rng.integers(tasks, size=n_base)
    lengths = rng.integers(6, 41, size=n_base)
    # word ranks, not words: at 5M prompts the words as a NumPy string array would take ~5 GiB
    ranks = rng.zipf(1.3, size=int(lengths.sum())) % len(vocab)
    instances = [" ".join(vocab[p].tolist()) for p in np.split(ranks, np.cumsum(lengths)[:-1])]
    del ranks
    groups = list(range(n_base))
    kinds = ["base"] * n_base
    tasks_of = task.tolist()
    true_j = [1.0] * n_base
    picks = rng.choice(n_base, size=n - n_base, replace=n - n_base > n_base)
    near_heads, near_instances = [], []
    for b in picks.tolist():
        words = instances[b].split(" ")
        # edits inside the instance drive the true Jaccard into one of the bands
        k = int(rng.integers(0, max(1, len(words) // 6) + 1))
        new = " ".join(edit_words(rng, words, vocab, k))
        t = int(task[b])
        near_heads.append(" ".join(edit_words(rng, heads[t].split(" "), vocab, int(rng.integers(0, 3)))))
        near_instances.append(new)
        groups.append(b)
        kinds.append("near")
        tasks_of.append(t)
        true_j.append(content_jaccard(instances[b], new))
    # the questions are put together in Arrow, not as Python strings (~5 GiB more at 5M prompts)
    inst = pl.Series("instance", instances + near_instances, dtype=pl.String)
    del instances
    head = pl.concat([pl.Series(heads, dtype=pl.String).gather(task), pl.Series(near_heads, dtype=pl.String)])
    tail = pl.Series(tails, dtype=pl.String).gather(pl.Series(tasks_of))
    questions = pl.select(
        pl.format("Definition: {}. Input: {}. {}. Output:", pl.lit(head), pl.lit(inst), pl.lit(tail))
    ).to_series()
    del head, tail
    return pl.DataFrame(
        {
            "id": bench_ids("tbench", len(questions)),
            "question": questions,
            "task_name": [f"task{t:04d}" for t in tasks_of],
            "instance": inst,
            "group": groups,
            "kind": kinds,
            "true_jaccard": true_j,
        }
    ).sort("group", "kind")  # a copy right after its original, so a prefix holds whole groups


def clusters(df: pl.DataFrame, removed: pl.DataFrame) -> pl.DataFrame:
    """id -> cluster (the kept row's id; a row's own id when it was kept or removed for no twin)."""
    kept = removed.filter(pl.col("kept_id").is_not_null()).select("id", "kept_id")
    return (
        df.select("id")
        .join(kept, on="id", how="left")
        .select("id", pl.coalesce("kept_id", "id").alias("cluster"))
    )


def band_scores(df: pl.DataFrame, removed: pl.DataFrame) -> dict[str, dict[str, float | int]]:
    """Recall per true-Jaccard band of the planted copies, and precision of all merges."""
    cl = clusters(df, removed)
    rows = df.select("id", "group", "true_jaccard", "kind").join(cl, on="id")
    base = rows.filter(pl.col("kind") == "base").select("group", pl.col("cluster").alias("base_cluster"))
    copies = rows.filter(pl.col("kind") == "near").join(base, on="group")
    out: dict[str, dict[str, float | int]] = {}
    for lo, hi in BANDS:
        band = copies.filter(pl.col("true_jaccard").is_between(lo, hi, closed="left"))
        hit = int((band["cluster"] == band["base_cluster"]).sum())
        out[f"{lo:.1f}-{min(hi, 1.0):.1f}"] = {"planted": band.height, "recall": hit / max(band.height, 1)}
    merged = (
        removed.filter(pl.col("kept_id").is_not_null())
        .select("id", "kept_id")
        .join(df.select("id", "group"), on="id")
        .join(df.select(pl.col("id").alias("kept_id"), pl.col("group").alias("kept_group")), on="kept_id")
    )
    wrong = int((merged["group"] != merged["kept_group"]).sum())
    total = merged.height
    out["all"] = {"removed": total, "wrong": wrong, "precision": (total - wrong) / total if total else 1.0}
    return out


def precision_recall(df: pl.DataFrame, removed: set[str]) -> dict[str, float]:
    """Removed rows vs planted groups: each group of size k should lose exactly k - 1 rows."""
    marked = df.with_columns(pl.col("id").is_in(list(removed)).alias("removed"))
    grouped = (
        marked.filter(pl.col("group") >= 0)
        .group_by("group")
        .agg(pl.len().alias("size"), pl.col("removed").sum().alias("gone"))
    )
    tp = int(grouped.select(pl.min_horizontal(pl.col("gone"), pl.col("size") - 1)).to_series().sum())
    expected = int((grouped["size"] - 1).sum())
    total = len(removed)
    return {
        "precision": tp / total if total else 1.0,
        "recall": tp / expected if expected else 1.0,
        "removed": total,
        "expected": expected,
    }
