"""DVC stage `dedup`: decontaminate and deduplicate the licensed prompts.

python -m dedup.stage --params params.yaml --prompts data/license/prompts.parquet --out data/dedup
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from builders.config import load_base, load_section
from builders.io import (
    PARQUET_WRITE_OPTS,
    REMOVED_SCHEMA,
    atomic_path,
    setup_logging,
    write_json,
    write_parquet,
)
from dedup.config import DedupConfig
from dedup.corpus import Corpus
from dedup.decontam import DedupInputError, load_eval_texts
from dedup.pipeline import DedupResult, check_corpus, dedup_corpus

logger = logging.getLogger(__name__)

REMOVED_DEDUP_SCHEMA = pa.schema(
    [
        *REMOVED_SCHEMA,
        pa.field("cluster_id", pa.string()),
        pa.field("kept_id", pa.string()),
        pa.field("question", pa.string()),
        pa.field("kept_question", pa.string()),  # the kept row, eval item or earlier release row
        pa.field("similarity", pa.float64()),  # content Jaccard (1.0 exact) or eval match score
        pa.field("template_similarity", pa.float64()),
    ]
)


def kept_schema(input_schema: pa.Schema) -> pa.Schema:
    """The input prompt schema plus `cluster_id`."""
    fields = [f for f in input_schema if f.name != "cluster_id"]
    return pa.schema([*fields, pa.field("cluster_id", pa.string(), nullable=False)])


def read_previous(path: str) -> pl.DataFrame:
    """`id` and `question` of an earlier release's prompts."""
    p = Path(path)
    if not p.is_file():
        raise DedupInputError(f"dedup.previous_release: file not found: {p}")
    names = pq.read_schema(p).names
    missing = [c for c in ("id", "question") if c not in names]
    if missing:
        raise DedupInputError(f"{p}: previous release lacks column(s) {missing}")
    return pl.read_parquet(p, columns=[c for c in ("id", "question", "task_name") if c in names])


def write_kept(prompts_path: str, keep_ids: pa.Array, target: Path) -> int:
    """Stream the input table in row batches, keeping `keep_ids` and adding `cluster_id`.

    The input is read batch by batch, so only one batch of the table is
    held in memory. Requires the input sorted by id (the prompt table contract).
    """
    schema = kept_schema(pq.read_schema(prompts_path))
    opts = {k: v for k, v in PARQUET_WRITE_OPTS.items() if k != "row_group_size"}
    rows = 0
    with atomic_path(target) as tmp, pq.ParquetWriter(tmp, schema, **opts) as writer:
        for batch in pq.ParquetFile(prompts_path).iter_batches(
            batch_size=PARQUET_WRITE_OPTS["row_group_size"]
        ):
            table = pa.Table.from_batches([batch])
            table = table.filter(pc.is_in(table["id"], value_set=keep_ids))
            table = table.drop_columns([c for c in ("cluster_id",) if c in table.column_names])
            table = table.append_column("cluster_id", table["id"]).cast(schema)
            writer.write_table(table, row_group_size=PARQUET_WRITE_OPTS["row_group_size"])
            rows += table.num_rows
    logger.info("wrote %s rows to %s", rows, target)
    return rows


def run(params_path: str, prompts_path: str, out_dir: str) -> DedupResult:
    """Load params and inputs, deduplicate, write prompts.parquet, removed.parquet, stats.json."""
    cfg = load_section(DedupConfig, params_path, "dedup")
    seed = load_base(params_path).seed
    logger.info("dedup params: %s (base.seed=%d)", cfg.model_dump(), seed)
    eval_sets = {spec.name: load_eval_texts(spec) for spec in cfg.eval_sets}
    previous = read_previous(cfg.previous_release) if cfg.previous_release else None
    corpus = Corpus.from_parquet(prompts_path)
    check_corpus(corpus)
    result = dedup_corpus(corpus, cfg, seed, eval_sets, previous)
    keep_ids = corpus.ids.filter(pl.Series(result.keep)).to_arrow()
    out = Path(out_dir)
    write_kept(prompts_path, keep_ids, out / "prompts.parquet")
    write_parquet(result.removed, out / "removed.parquet", REMOVED_DEDUP_SCHEMA)
    write_json(result.stats, out / "stats.json")
    return result


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `dedup` DVC stage."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prompts", required=True, help="input prompt table (Parquet)")
    parser.add_argument("--out", required=True, help="output folder")
    args = parser.parse_args(argv)
    setup_logging()
    run(args.params, args.prompts, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
