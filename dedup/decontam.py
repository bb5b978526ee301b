"""Evaluation sets: loading their texts and finding prompts that contain them."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from core.errors import InputError
from core.io import read_parquet
from dedup.config import EvalSetSpec
from dedup.minhash import MinHashParams, Shingles, batch_shingles, signatures
from dedup.normalize import normalize_batch

logger = logging.getLogger(__name__)


class DedupInputError(InputError):
    """Bad input to the dedup stage: a clear message naming the file, column or rows."""


def load_eval_texts(spec: EvalSetSpec) -> list[str]:
    """The texts of one evaluation set (non-empty strings of its text column)."""
    if spec.path is not None:
        path = Path(spec.path)
        if not path.is_file():
            raise DedupInputError(f"eval set '{spec.name}': file not found: {path}")
        where = str(path)
        suffix = path.suffix.lower()
        if suffix == ".parquet":
            df = read_parquet(path)
        elif suffix == ".jsonl":
            df = pl.read_ndjson(path)
        elif suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if spec.json_field is not None:
                if not isinstance(data, dict) or spec.json_field not in data:
                    raise DedupInputError(f"{where}: no key '{spec.json_field}' (eval set '{spec.name}')")
                data = data[spec.json_field]
            if not isinstance(data, list):
                raise DedupInputError(f"{where}: expected a list of records (set `json_field`)")
            df = pl.DataFrame(data)
        else:
            raise DedupInputError(f"{where}: unsupported eval file type '{suffix}' (parquet, jsonl, json)")
        columns = df.columns
        texts = df[spec.text_column].to_list() if spec.text_column in columns else None
    else:
        import datasets

        where = f"{spec.hub_id} ({spec.hub_config or 'default'}, split {spec.split})"
        ds = datasets.load_dataset(spec.hub_id, spec.hub_config, split=spec.split, revision=spec.revision)
        columns = list(ds.column_names)
        texts = ds[spec.text_column] if spec.text_column in columns else None
    if texts is None:
        raise DedupInputError(
            f"{where}: text column '{spec.text_column}' not found in eval set '{spec.name}' "
            f"(columns: {', '.join(columns)})"
        )
    kept = [t for t in texts if isinstance(t, str) and t.strip()]
    if len(kept) < len(texts):
        logger.warning("%s: skipped %d empty or non-string items", where, len(texts) - len(kept))
    return kept


@dataclass(frozen=True)
class EvalIndex:
    """N-gram hashes and MinHash signatures of all evaluation items."""

    names: list[str]  # per item
    item_index: np.ndarray  # per item: index within its set
    ngrams: pl.DataFrame  # item (int64), hash (uint64); items with >= decontam_ngram words
    ngram_counts: np.ndarray  # distinct n-grams per item (0 for short items)
    signatures: np.ndarray  # (items, num_perm) uint32
    nonempty: np.ndarray  # bool per item: has at least one shingle


def build_eval_index(sets: dict[str, list[str]], params: MinHashParams, decontam_ngram: int) -> EvalIndex:
    """Index the evaluation items for the overlap and MinHash tests."""
    names = [name for name, texts in sets.items() for _ in texts]
    item_index = np.concatenate([np.arange(len(t)) for t in sets.values()] or [np.empty(0, int)])
    texts = [t for texts in sets.values() for t in texts]
    batch = normalize_batch(texts)
    sh = batch_shingles(batch, decontam_ngram)
    words = np.array(
        [0 if batch.lengths()[i] == 0 else batch.text(i).count(" ") + 1 for i in range(len(batch))],
        dtype=np.int64,
    )
    long_enough = words >= decontam_ngram
    keep = long_enough[sh.doc]
    frame = pl.DataFrame({"item": sh.doc[keep], "hash": sh.hash64[keep]}).unique().sort(["hash", "item"])
    counts = np.bincount(frame["item"].to_numpy(), minlength=len(texts))
    sig = signatures(batch, params)
    short = int((~long_enough).sum())
    if short:
        logger.info("%d eval items have fewer than %d words: MinHash test only", short, decontam_ngram)
    return EvalIndex(names, item_index, frame, counts, sig, batch.lengths() > 0)


def overlap_matches(sh: Shingles, index: EvalIndex, min_overlap: float, row_offset: int) -> pl.DataFrame:
    """Rows whose n-grams cover at least `min_overlap` of some eval item's n-grams."""
    empty = pl.DataFrame(schema={"row": pl.Int64, "item": pl.Int64, "score": pl.Float64})
    if index.ngrams.height == 0 or len(sh.doc) == 0:
        return empty
    prompt = pl.DataFrame({"row": sh.doc + row_offset, "hash": sh.hash64})
    hits = prompt.join(index.ngrams, on="hash").unique(["row", "item", "hash"])
    if hits.height == 0:
        return empty
    counts = pl.DataFrame({"item": np.arange(len(index.ngram_counts)), "total": index.ngram_counts})
    return (
        hits.group_by(["row", "item"])
        .agg(pl.len().alias("shared"))
        .join(counts, on="item")
        .with_columns((pl.col("shared") / pl.col("total")).alias("score"))
        .filter(pl.col("score") >= min_overlap)
        .select("row", "item", "score")
    )
