"""What a reviewer reads: `removed.parquet` rows with both texts, and merge similarity figures.

Decisions are held per row as compact arrays (a reason code, the kept row, scores); the texts of
the removed rows and of the rows they were merged into are fetched at the end, straight into the
audit table's final order as Arrow arrays, never as Python strings.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from core.schema import REMOVED_SCHEMA, fields
from dedup.corpus import Corpus

STAGE = "dedup"
REASONS = ("contaminated", "in_previous_release", "exact_duplicate", "near_duplicate", "template_variant")
CODE = {r: i + 1 for i, r in enumerate(REASONS)}  # 0: kept
DUPLICATE_CODES = (CODE["exact_duplicate"], CODE["near_duplicate"], CODE["template_variant"])
SIMILARITY_BINS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
# kept_question: the kept row, eval item or earlier release row; similarity: content Jaccard
# (1.0 exact) or the eval match score.
REMOVED_DEDUP_SCHEMA = pa.schema(
    [
        *REMOVED_SCHEMA,
        *fields(
            "cluster_id? kept_id? question? kept_question? similarity?:float64 template_similarity?:float64"
        ),
    ]
)

EARLY_SCHEMA = {
    "row": pl.Int64,
    "kept_id": pl.String,
    "kept_question": pl.String,
    "similarity": pl.Float64,
    "detail": pl.String,
}


def similarity_summary(values: np.ndarray) -> dict[str, Any]:
    """Histogram and quantiles of merge similarities (for stats.json)."""
    if not len(values):
        return {"count": 0}
    edges = np.array([0.0, *SIMILARITY_BINS])
    hist = {
        f"[{edges[i]:.1f},{edges[i + 1]:.1f})": int(((values >= edges[i]) & (values < edges[i + 1])).sum())
        for i in range(len(edges) - 1)
    }
    hist["1.0"] = int((values >= 1.0).sum())
    q = np.quantile(values, [0.01, 0.1, 0.5])
    return {
        "count": len(values),
        "histogram": hist,
        "min": round(float(values.min()), 4),
        "p01": round(float(q[0]), 4),
        "p10": round(float(q[1]), 4),
        "median": round(float(q[2]), 4),
    }


def removed_frame(
    corpus: Corpus,
    code: np.ndarray,
    root: np.ndarray,
    score: np.ndarray,
    tsim: np.ndarray,
    twin: np.ndarray,
    early: pl.DataFrame,
) -> pl.DataFrame:
    """One row per removed row, sorted by (reason, id).

    Duplicates name their kept row (`root`) and carry both questions and the measured
    similarities (an exact duplicate whose `twin` was itself merged into a kept row carries the
    twin's); contaminated rows and rows of an earlier release come with theirs in `early`.
    """
    gone = np.flatnonzero(code > 0)
    dup_rows = np.flatnonzero(np.isin(code, DUPLICATE_CODES))
    ids = corpus.ids
    base = pl.DataFrame(
        {
            "row": gone,
            "id": ids.gather(gone).cast(pl.String),
            "stage": pl.Series([STAGE], dtype=pl.String).extend_constant(STAGE, len(gone) - 1)
            if len(gone)
            else pl.Series([], dtype=pl.String),
            "reason": pl.Series(REASONS, dtype=pl.String).gather(code[gone].astype(np.int64) - 1),
        }
    )
    dups = pl.DataFrame(
        {
            "row": dup_rows,
            "kept_row": root[dup_rows],
            "kept_id": ids.gather(root[dup_rows]).cast(pl.String),
            "twin_id": ids.gather(np.where(twin[dup_rows] >= 0, twin[dup_rows], dup_rows)).cast(pl.String),
            "similarity": pl.Series(score[dup_rows], dtype=pl.Float64),
            "template_similarity": pl.Series(tsim[dup_rows], dtype=pl.Float64),
        }
    )
    meta = (
        base.join(pl.concat([dups, early], how="diagonal_relaxed"), on="row", how="left")
        .with_columns(
            pl.when(pl.col("reason") == "in_previous_release")
            .then(None)
            .otherwise(pl.col("kept_id"))
            .alias("cluster_id"),
            pl.col("similarity", "template_similarity").fill_nan(None),
            pl.when((pl.col("reason") == "exact_duplicate") & (pl.col("twin_id") == pl.col("kept_id")))
            .then(pl.format("exact duplicate of {}", pl.col("kept_id")))
            .when(pl.col("reason") == "exact_duplicate")
            .then(
                pl.format(
                    "exact duplicate of {}, which is a near duplicate (content Jaccard {}) of {}",
                    pl.col("twin_id"),
                    pl.col("similarity").round(3),
                    pl.col("kept_id"),
                )
            )
            .when(pl.col("reason").is_in(["near_duplicate", "template_variant"]))
            .then(
                pl.format(
                    "content Jaccard {}, template Jaccard {} with {}",
                    pl.col("similarity").round(3),
                    pl.col("template_similarity").round(3),
                    pl.col("kept_id"),
                )
            )
            .otherwise(pl.col("detail"))
            .alias("detail"),
        )
        .sort(["reason", "id"])
    )
    # texts last, fetched straight into the final order (two Arrow columns, no further copies)
    kept = meta["kept_row"].is_not_null().to_numpy()
    kept_at = np.flatnonzero(kept)
    kept_rows = meta["kept_row"].fill_null(-1).to_numpy()[kept_at]
    question, fetched = corpus.texts(meta["row"].to_numpy(), kept_rows)
    index = np.full(meta.height, -1, dtype=np.int64)
    index[kept_at] = np.arange(len(kept_at))
    kept_question = fetched.take(pa.array(index, mask=~kept))
    del fetched
    if meta["kept_question"].null_count() < meta.height:  # contaminated rows, an earlier release
        kept_question = pc.coalesce(kept_question, meta["kept_question"].to_arrow().cast(pa.large_string()))
    return meta.with_columns(
        pl.Series("question", question, dtype=pl.String),
        pl.Series("kept_question", kept_question, dtype=pl.String),
    ).select(REMOVED_DEDUP_SCHEMA.names)
