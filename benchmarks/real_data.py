"""Real FLAN-format prompts for the benchmarks, with the ground truth needed to judge dedup.

`../shared/data/real/` holds two files (see its README):

- `niv1_dev.parquet`: real NIV2 prompts (Natural Instructions v1 renderings); the zero-shot ones
  are used. An example is (task, instance index); its instance is what follows the last `input:`.
- `flan_dev.parquet`: CoT (forward and answer-to-question inversions) and Flan 2021's TREC,
  rendered with FLAN v2's own templates. An example is (source file, line): the same line under
  two templates is the same example; its instance is the `instance` column.

`load_real` gives one frame for either: `question, task_name, task_source, template_type, submix,
example, instance, template` (+ `answer` where the file has one). `plant_edits` adds light wording edits.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import polars as pl

SEED = 20231101
REAL_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
REAL_FILES = {"niv1_dev": REAL_DIR / "niv1_dev.parquet", "flan_dev": REAL_DIR / "flan_dev.parquet"}
_INPUT = re.compile(r"(?is)^.*\binput:\s*(.*?)\s*(?:output:\s*)?$")
_WORD = re.compile(r"\w+")
_NUMBER = re.compile(r"\d")


def instance_text(prompt: str) -> str:
    """The instance of an NIV2 prompt: what follows its last `input:` (without `output:`)."""
    m = _INPUT.match(prompt)
    return m.group(1) if m else prompt


def load_real(path: Path) -> pl.DataFrame:
    """Zero-shot prompts of a real file with their example key and instance text."""
    df = pl.read_parquet(path).filter(pl.col("template_type").is_in(["zs_opt", "zs_noopt"]))
    if "line" in df.columns:  # flan_dev: FLAN v2 renderings, one example per (source, line)
        out = df.select(
            pl.col("inputs").alias("question"),
            "task_name",
            "task_source",
            "template_type",
            "submix",
            (pl.col("source") + "|" + pl.col("line").cast(pl.String)).alias("example"),
            "instance",
            "answer",
            pl.concat_str(
                "task_name", "template_type", pl.col("template_index").cast(pl.String), separator="|"
            ).alias("template"),
        )
    else:  # niv1_dev: one example per (task, instance index)
        out = df.select(
            pl.col("inputs").alias("question"),
            "task_name",
            pl.lit("NIv2").alias("task_source"),
            "template_type",
            pl.lit("niv2").alias("submix"),
            (pl.col("task_name") + "|" + pl.col("instance").cast(pl.String)).alias("example"),
            pl.col("inputs").map_elements(instance_text, return_dtype=pl.String).alias("instance"),
            (pl.col("task_name") + "|" + pl.col("encoding")).alias("template"),
        )
    return out


def _ids(prefix: str, n: int) -> list[str]:
    return [hashlib.sha256(f"{prefix}|{i}".encode()).hexdigest()[:24] for i in range(n)]


def _edit(rng: np.random.Generator, words: list[str], vocab: np.ndarray, k: int) -> list[str]:
    """`k` substitutions, insertions or deletions of words without digits, at uniform positions:
    a light wording edit that keeps every number (a changed number makes another problem)."""
    words = list(words)
    for _ in range(k):
        free = [i for i, w in enumerate(words) if not _NUMBER.search(w)]
        if not free:
            break
        i = free[int(rng.integers(len(free)))]
        op = int(rng.integers(3))
        if op == 0:
            words[i] = str(vocab[int(rng.integers(len(vocab)))])
        elif op == 1:
            words.insert(i, str(vocab[int(rng.integers(len(vocab)))]))
        elif len(words) > 1:
            del words[i]
    return words


def plant_edits(
    df: pl.DataFrame, edits: int = 400, share: float = 0.05, min_words: int = 30, seed: int = SEED
) -> pl.DataFrame:
    """`df` plus `edits` copies of prompts of `min_words`+ words with `share` of their words edited
    (`kind`: base | edit; an edit's `original` is the id of the row it copies). Rows get ids."""
    rng = np.random.default_rng(seed)
    base = df.with_columns(pl.lit("base").alias("kind"), pl.Series("id", _ids("real", df.height)))
    n_words = base["question"].str.split(" ").list.len()
    eligible = np.flatnonzero((n_words >= min_words).to_numpy())
    vocab = np.array(
        sorted({w for q in base["question"].to_list() for w in q.split() if not _NUMBER.search(w)})
    )
    picks = np.sort(rng.choice(eligible, size=min(edits, len(eligible)), replace=False))
    copies = []
    for i in picks.tolist():
        words = base["question"][i].split(" ")
        copies.append(" ".join(_edit(rng, words, vocab, max(1, round(share * len(words))))))
    planted = (
        base[picks]
        .with_columns(
            pl.Series("question", copies),
            pl.lit("edit").alias("kind"),
            pl.col("id").alias("original"),
        )
        .with_columns(pl.Series("id", _ids("real-edit", len(copies))))
    )
    return pl.concat([base, planted], how="diagonal").sort("id")


def word_ngrams(text: str, n: int = 3) -> set[str]:
    """Casefolded word n-grams of `text` (a text shorter than n words is one n-gram)."""
    words = _WORD.findall(text.casefold())
    if len(words) < n:
        return {" ".join(words)}
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


def instance_jaccard(a: str, b: str, n: int = 3) -> float:
    """Jaccard of the word 3-gram sets of two instances (the benchmarks' ground truth)."""
    sa, sb = word_ngrams(a, n), word_ngrams(b, n)
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


def numbers(text: str) -> list[str]:
    """The numbers of a text, sorted (a multiset)."""
    return sorted(re.findall(r"\d+", text))
