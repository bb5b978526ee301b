"""Benchmark: our dedup stage vs datasketch's per-document MinHash.update + MinHashLSH.

    python -m dedup.bench --n 200000

Generates a FLAN-like corpus (templates around Zipf-distributed passages) with planted exact
duplicates (case, whitespace, punctuation variants) and near duplicates (a few words changed,
true 5-gram Jaccard >= 0.85) and their ground truth; then runs, each in a fresh process so peak
memory is its own: our stage (`dedup_frame`, default params) on the whole corpus, and the baseline
(datasketch defaults: sha1 hashfunc, MinHash(num_perm=128) updated once per shingle, MinHashLSH
threshold 0.8, query-then-insert) on the first `--baseline-n` documents. Prints docs/s, peak RSS,
the ratio, and precision/recall of removed rows against the ground truth.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import unicodedata
from pathlib import Path
from typing import Any

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


def _peak_rss_mib() -> float:
    # VmHWM is this process's own high-water mark; ru_maxrss would carry the parent's over exec
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def run_ours(corpus: Path, out: Path, limit: int) -> dict[str, Any]:
    """Our stage on the whole corpus (default params)."""
    from dedup.config import DedupConfig
    from dedup.pipeline import dedup_rows

    base = _rss_mib()
    cpu0, t0 = _cpu_s(), time.perf_counter()
    df = pl.read_parquet(corpus, columns=["id", "question"], n_rows=limit)
    result = dedup_rows(df, DedupConfig(), SEED)
    seconds, cpu = time.perf_counter() - t0, _cpu_s() - cpu0
    out.write_text("\n".join(result.removed["id"].to_list()))
    return {
        "docs": df.height,
        "seconds": seconds,
        "cpu_s": cpu,
        "peak_rss_mib": _peak_rss_mib(),
        "base_rss_mib": base,
        "phases": result.stats["timing"]["phases"],
    }


def run_baseline(corpus: Path, out: Path, limit: int) -> dict[str, Any]:
    """datasketch defaults, one update() per shingle, MinHashLSH query-then-insert."""
    from datasketch import MinHash, MinHashLSH

    base = _rss_mib()
    cpu0, t0 = _cpu_s(), time.perf_counter()
    df = pl.read_parquet(corpus, columns=["id", "question"], n_rows=limit)
    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    removed = []
    for rid, text in df.iter_rows():
        m = MinHash(num_perm=128)
        for sh in _shingle_set(text):
            m.update(sh.encode("utf-8"))
        if lsh.query(m):
            removed.append(rid)
        else:
            lsh.insert(rid, m)
    seconds, cpu = time.perf_counter() - t0, _cpu_s() - cpu0
    out.write_text("\n".join(removed))
    return {
        "docs": df.height,
        "seconds": seconds,
        "cpu_s": cpu,
        "peak_rss_mib": _peak_rss_mib(),
        "base_rss_mib": base,
    }


def _child(kind: str, corpus: Path, out: Path, limit: int) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "dedup.bench",
        "--child",
        kind,
        "--corpus",
        str(corpus),
        "--removed",
        str(out),
    ]
    cmd += ["--baseline-n", str(limit)]
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Generate the corpus, run both sides, print the comparison."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000, help="prompts in the generated corpus")
    ap.add_argument("--baseline-n", type=int, default=10_000, help="docs the baseline runs on")
    ap.add_argument("--child", choices=["ours", "baseline"], help=argparse.SUPPRESS)
    ap.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--removed", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        if args.child == "ours":
            res = run_ours(args.corpus, args.removed, args.baseline_n)
        else:
            res = run_baseline(args.corpus, args.removed, args.baseline_n)
        print(json.dumps(res))
        return 0

    t0 = time.perf_counter()
    df = make_corpus(args.n)
    gen_s = time.perf_counter() - t0
    base_n = min(args.baseline_n, args.n)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.parquet"
        df.sort("id").write_parquet(corpus)  # the prompt table contract: sorted by id
        # the baseline's subsample keeps generation order, so planted groups stay together
        df.head(base_n).write_parquet(Path(tmp) / "baseline.parquet")
        small = _child("ours", corpus, Path(tmp) / "small.txt", args.n // 5)  # for the memory slope
        ours = _child("ours", corpus, Path(tmp) / "ours.txt", args.n)
        ours_removed = set(filter(None, (Path(tmp) / "ours.txt").read_text().splitlines()))
        base = _child("baseline", Path(tmp) / "baseline.parquet", Path(tmp) / "base.txt", base_n)
        base_removed = set(filter(None, (Path(tmp) / "base.txt").read_text().splitlines()))
    planted = df.filter(pl.col("kind") != "base")
    print(
        f"corpus: {args.n} FLAN-like prompts ({gen_s:.1f}s to generate); planted "
        f"{planted.filter(pl.col('kind') == 'exact').height} exact and "
        f"{planted.filter(pl.col('kind') == 'near').height} near duplicates"
    )
    ours_dps = ours["docs"] / ours["seconds"]
    base_dps = base["docs"] / base["seconds"]
    pr = precision_recall(df, ours_removed)
    pr_base = precision_recall(df.head(base_n), base_removed)
    print(
        f"ours     : {ours['docs']} docs in {ours['seconds']:.1f}s = {ours_dps:,.0f} docs/s, "
        f"peak RSS {ours['peak_rss_mib']:,.0f} MiB; precision {pr['precision']:.4f}, "
        f"recall {pr['recall']:.4f} "
        f"({pr['removed']} removed, {pr['expected']} expected)"
    )
    note = " (measured on a subsample; docs/s extrapolated)" if base_n < args.n else ""
    print(
        f"baseline : {base['docs']} docs in {base['seconds']:.1f}s = {base_dps:,.0f} docs/s, "
        f"peak RSS {base['peak_rss_mib']:,.0f} MiB; precision {pr_base['precision']:.4f}, "
        f"recall {pr_base['recall']:.4f} on its {base_n} docs{note}"
    )
    ours_cpu = ours["docs"] / ours["cpu_s"]
    base_cpu = base["docs"] / base["cpu_s"]
    print(
        f"speedup  : {ours_dps / base_dps:.1f}x docs/s (wall clock); baseline would need "
        f"{args.n / base_dps:,.0f}s for {args.n} docs"
    )
    print(
        f"cpu time : ours {ours['cpu_s']:.1f} CPU-s ({ours_cpu:,.0f} docs per CPU-second), baseline "
        f"{base['cpu_s']:.1f} CPU-s ({base_cpu:,.0f} docs per CPU-second); ratio {ours_cpu / base_cpu:.1f}x; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print(f"phases   : ours, seconds: {ours['phases']}")
    slope = (ours["peak_rss_mib"] - small["peak_rss_mib"]) / (args.n - args.n // 5)
    at_5m = ours["peak_rss_mib"] + slope * (5_000_000 - args.n)
    print(
        f"memory   : ours peak RSS {ours['peak_rss_mib']:,.0f} MiB at {args.n} docs "
        f"({ours['base_rss_mib']:,.0f} MiB after imports), "
        f"{small['peak_rss_mib']:,.0f} MiB at {args.n // 5}; marginal {slope * 1024:.2f} KiB/doc "
        f"(corpus text included) -> 5M prompts ~ {at_5m / 1024:,.1f} GiB; "
        f"time at this rate ~ {5_000_000 / ours_dps / 60:.1f} min"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
