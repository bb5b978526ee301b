"""Evaluation sets: loading their texts and finding prompts that contain them."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from core.errors import InputError
from core.io import read_document, read_parquet
from dedup.config import EvalSetSpec
from dedup.minhash import MinHashParams, Shingles, batch_shingles, signatures
from dedup.normalize import normalize_batch

logger = logging.getLogger(__name__)


class DedupInputError(InputError):
    """Bad input to the dedup stage: a clear message naming the file, column or rows."""


def load_eval_texts(spec: EvalSetSpec) -> list[str]:
    """The texts of one evaluation set (non-empty strings of its text column).

    A file that cannot be read (missing, not UTF-8, broken JSON or JSONL, a line that is not an
    object), a set without items, or an item that is not a string stops the stage with one line
    naming the file (and line or item); null and empty items are skipped with a warning.
    """
    if spec.path is not None:
        path = Path(spec.path)
        if not path.is_file():
            raise DedupInputError(f"eval set '{spec.name}': file not found: {path}")
        where = str(path)
        columns, texts = _read_local(path, spec)
    else:
        where = f"{spec.hub_id} ({spec.hub_config or 'default'}, split {spec.split})"
        columns, texts = _read_hub(spec, where)
    if texts is None:
        raise DedupInputError(
            f"{where}: text column '{spec.text_column}' not found in eval set '{spec.name}' "
            f"(columns: {', '.join(columns)})"
        )
    bad = next(((k, t) for k, t in enumerate(texts) if t is not None and not isinstance(t, str)), None)
    if bad is not None:
        k, t = bad
        unit = "line" if where.endswith(".jsonl") else "item"
        raise DedupInputError(
            f"{where}: {unit} {k + 1} of eval set '{spec.name}': '{spec.text_column}' is "
            f"{type(t).__name__}, not a string ({str(t)[:60]!r})"
        )
    kept = [t for t in texts if isinstance(t, str) and t.strip()]
    if not kept:
        raise DedupInputError(f"{where}: eval set '{spec.name}' has no text items in '{spec.text_column}'")
    if len(kept) < len(texts):
        logger.warning("%s: skipped %d empty or null items", where, len(texts) - len(kept))
    return kept


def _read_local(path: Path, spec: EvalSetSpec) -> tuple[list[str], list[Any] | None]:
    """(columns, values of the text column or None when it is missing) of a local eval file."""
    suffix = path.suffix.lower()
    what = f"eval set '{spec.name}'"
    if suffix == ".parquet":
        df = read_parquet(path)
        return df.columns, df[spec.text_column].to_list() if spec.text_column in df.columns else None
    if suffix == ".jsonl":
        records = _read_jsonl(path, what)
    elif suffix == ".json":
        data = read_document(path, what=what, error=DedupInputError)
        if spec.json_field is not None:
            if not isinstance(data, dict) or spec.json_field not in data:
                raise DedupInputError(f"{path}: no key '{spec.json_field}' ({what})")
            data = data[spec.json_field]
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise DedupInputError(f"{path}: expected a list of records (objects) ({what}; set `json_field`)")
        records = data
    else:
        raise DedupInputError(f"{path}: unsupported eval file type '{suffix}' (parquet, jsonl, json)")
    if not records:
        raise DedupInputError(f"{path}: {what} has no items")
    columns = list(dict.fromkeys(k for r in records for k in r))
    if spec.text_column not in columns:
        return columns, None
    return columns, [r.get(spec.text_column) for r in records]


def _read_jsonl(path: Path, what: str) -> list[dict[str, Any]]:
    """The objects of a JSON Lines file (blank lines skipped); a bad line is named by its number."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DedupInputError(f"{path}: {what} is not UTF-8 text (byte {exc.start})") from None
    records = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DedupInputError(f"{path}: line {n} of {what} is not valid JSON: {exc.msg}") from None
        if not isinstance(record, dict):
            raise DedupInputError(f"{path}: line {n} of {what} is {type(record).__name__}, not an object")
        records.append(record)
    return records


def _read_hub(spec: EvalSetSpec, where: str) -> tuple[list[str], list[Any] | None]:
    """(columns, values of the text column or None) of an eval set on the Hub."""
    import datasets

    try:
        ds = datasets.load_dataset(spec.hub_id, spec.hub_config, split=spec.split, revision=spec.revision)
    except (OSError, ValueError) as exc:  # datasets' and huggingface_hub's errors derive from these
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DedupInputError(
            f"{where}: cannot load eval set '{spec.name}': {type(exc).__name__}: {detail}"
        ) from None
    columns = list(ds.column_names)
    return columns, ds[spec.text_column] if spec.text_column in columns else None


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
