"""Stage `tiny_models`: the offline demo's tiny teachers and student, built from the FLAN sample.

`python -m builders.tiny_models --params params.yaml --sample sample/flan --out models` trains one
byte-level BPE tokenizer on the sample's `inputs`/`targets` texts and writes one tiny Llama with
random weights per entry of `tiny_models.models` to `<out>/<name>`. Their outputs are noise; they
exist so the pipeline runs end to end with real vLLM on a CPU.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
from pydantic import Field, field_validator, model_validator

from builders.config import StageConfig, load_base, load_section
from builders.io import setup_logging
from builders.tiny_model import MIN_HEAD_DIM, build_tiny_llama

logger = logging.getLogger(__name__)

TEXT_COLUMNS = ("inputs", "targets")


class TinyModelSpec(StageConfig):
    """Sizes of one tiny model; its seed is `base.seed + seed_offset`."""

    hidden_size: int = Field(64, gt=0)
    num_attention_heads: int = Field(2, gt=0)
    num_hidden_layers: int = Field(2, gt=0)
    intermediate_size: int = Field(128, gt=0)
    seed_offset: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _head_size(self) -> TinyModelSpec:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("hidden_size must be a multiple of num_attention_heads")
        if self.hidden_size // self.num_attention_heads < MIN_HEAD_DIM:
            raise ValueError(f"head size hidden_size/num_attention_heads must be >= {MIN_HEAD_DIM}")
        return self


class TinyModelsConfig(StageConfig):
    """The `tiny_models:` section."""

    vocab_size: int = Field(1024, ge=300)
    max_position_embeddings: int = Field(1024, ge=64)
    max_texts: int = Field(20000, gt=0, description="at most this many sample texts train the tokenizer")
    models: dict[str, TinyModelSpec]

    @field_validator("models")
    @classmethod
    def _names(cls, v: dict[str, TinyModelSpec]) -> dict[str, TinyModelSpec]:
        if not v:
            raise ValueError("at least one model")
        for name in v:
            if not name or "/" in name or name.startswith("."):
                raise ValueError(f"bad model name {name!r}")
        return v


def read_sample_texts(sample: str | Path, max_texts: int) -> list[str]:
    """Texts (`inputs` and `targets`) of every Parquet file under `sample`, in a stable order."""
    sample = Path(sample)
    files = sorted(sample.rglob("*.parquet")) if sample.is_dir() else [sample]
    if not files:
        raise FileNotFoundError(f"{sample}: no Parquet files found")
    texts: list[str] = []
    for path in files:
        cols = [c for c in TEXT_COLUMNS if c in pq.read_schema(path).names]
        if not cols:
            logger.warning("%s: no %s column, skipped", path, " or ".join(TEXT_COLUMNS))
            continue
        df = pl.read_parquet(path, columns=cols)
        for col in cols:
            texts.extend(t for t in df[col].cast(pl.String).to_list() if t)
    if not texts:
        raise ValueError(f"{sample}: no text in columns {TEXT_COLUMNS}")
    texts = sorted(set(texts))
    if len(texts) > max_texts:
        step = len(texts) / max_texts
        texts = [texts[int(i * step)] for i in range(max_texts)]
    return texts


def build_all(cfg: TinyModelsConfig, seed: int, sample: str | Path, out: str | Path) -> list[Path]:
    """Build every model of `cfg` under `out`; returns their folders."""
    texts = read_sample_texts(sample, cfg.max_texts)
    logger.info("training tokenizers on %d texts from %s", len(texts), sample)
    paths = []
    for name, spec in sorted(cfg.models.items()):
        paths.append(
            build_tiny_llama(
                Path(out) / name,
                texts,
                vocab_size=cfg.vocab_size,
                hidden_size=spec.hidden_size,
                num_attention_heads=spec.num_attention_heads,
                num_hidden_layers=spec.num_hidden_layers,
                intermediate_size=spec.intermediate_size,
                max_position_embeddings=cfg.max_position_embeddings,
                seed=seed + spec.seed_offset,
            )
        )
    return paths


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `tiny_models` stage."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--sample", required=True, help="folder of FLAN Parquet files")
    parser.add_argument("--out", required=True, help="folder that receives one subfolder per model")
    args = parser.parse_args(argv)
    setup_logging()
    cfg = load_section(TinyModelsConfig, args.params, "tiny_models")
    base = load_base(args.params)
    logger.info("tiny_models params: %s (base.seed=%d)", cfg.model_dump(), base.seed)
    build_all(cfg, base.seed, args.sample, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
