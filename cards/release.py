"""DVC stage `release`: a folder laid out like a Hub dataset repository, with its card.

    python -m cards.release --params params.yaml --traces data/traces/traces.parquet ... --out release

Writes `data/<config>/train-0000k-of-0000n.parquet` for config `default` (all teachers) and one
config per teacher, `data/heldout/test-...parquet`, `README.md` (the card) and `funnel.png`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import polars as pl
import yaml
from pydantic import Field, field_validator

from builders.config import ParamsError, StageConfig, load_params, load_section
from builders.io import atomic_path, setup_logging
from cards.card import CardSettings, render_card
from cards.funnel import funnel_chart
from cards.inputs import ReleaseInputError, ReleaseInputs, load_inputs
from cards.publish import PublishConfig
from cards.shards import ConfigShards, write_shards

logger = logging.getLogger(__name__)

RESERVED_CONFIGS = ("default", "heldout")
FUNNEL_PNG = "funnel.png"


class ReleaseConfig(StageConfig):
    """The `release:` section of params.yaml."""

    pretty_name: str = Field(min_length=1)
    language: list[str] = Field(default_factory=lambda: ["en"], min_length=1)
    task_categories: list[str] = Field(default_factory=lambda: ["text-generation"])
    tags: list[str] = Field(default_factory=list)
    source_datasets: list[str] = Field(default_factory=list)
    shard_max_bytes: int = Field(500_000_000, gt=0, description="Arrow-size estimate per Parquet shard")
    extra_limitations: list[str] = Field(default_factory=list)

    @field_validator("language")
    @classmethod
    def _iso_codes(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if not (2 <= len(c) <= 3 and c.isalpha() and c.islower())]
        if bad:
            raise ValueError(f"language codes must be ISO 639 (2-3 lowercase letters), got {bad}")
        return v


def build_release(
    inputs: ReleaseInputs, cfg: ReleaseConfig, pub: PublishConfig, params_excerpt: str, out: Path
) -> list[ConfigShards]:
    """Write the whole release folder at `out` atomically; returns the configs written."""
    teachers = inputs.teachers
    clash = [t for t in teachers if t in RESERVED_CONFIGS]
    if clash:
        raise ReleaseInputError(
            f"teacher names {clash} clash with the reserved config names {RESERVED_CONFIGS}"
        )
    with atomic_path(out, is_dir=True) as tmp:
        tmp.mkdir(parents=True, exist_ok=True)
        shards = [
            write_shards(inputs.traces, inputs.traces_schema, tmp, "default", "train", cfg.shard_max_bytes)
        ]
        for teacher in teachers:
            df = inputs.traces.filter(pl.col("teacher") == teacher)
            shards.append(write_shards(df, inputs.traces_schema, tmp, teacher, "train", cfg.shard_max_bytes))
        shards.append(
            write_shards(inputs.heldout, inputs.heldout_schema, tmp, "heldout", "test", cfg.shard_max_bytes)
        )
        funnel_chart(inputs.funnel, tmp / FUNNEL_PNG)
        settings = CardSettings(
            pretty_name=cfg.pretty_name,
            language=cfg.language,
            task_categories=cfg.task_categories,
            tags=cfg.tags,
            source_datasets=cfg.source_datasets,
            repo_id=pub.repo_id,
            version=pub.version,
            funnel_png=FUNNEL_PNG,
            extra_limitations=cfg.extra_limitations,
        )
        card = render_card(inputs, shards, settings, params_excerpt)
        card.save(tmp / "README.md")
    for s in shards:
        logger.info(
            "config %s/%s: %d rows in %d file(s)", s.config_name, s.split, s.num_examples, len(s.files)
        )
    return shards


def params_excerpt(params_path: Path) -> str:
    """The params file, re-dumped as YAML for the card (comments dropped, order kept)."""
    return yaml.safe_dump(load_params(params_path), sort_keys=False, allow_unicode=True).strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--traces", type=Path, required=True, help="data/traces/traces.parquet")
    parser.add_argument("--traces-stats", type=Path, required=True)
    parser.add_argument("--traces-meta", type=Path, required=True, help="folder of <teacher>.json")
    parser.add_argument("--prompts-stats", type=Path, required=True)
    parser.add_argument("--heldout", type=Path, required=True)
    parser.add_argument("--license-stats", type=Path, required=True)
    parser.add_argument("--license-summary", type=Path, required=True)
    parser.add_argument("--dedup-stats", type=Path, required=True)
    parser.add_argument("--dvc-lock", type=Path, default=Path("dvc.lock"))
    parser.add_argument("--eval-metrics", type=Path, default=None, help="optional data/eval/metrics.json")
    parser.add_argument("--out", type=Path, default=Path("release"))
    args = parser.parse_args(argv)
    setup_logging()
    try:
        cfg = load_section(ReleaseConfig, args.params, "release")
        pub = load_section(PublishConfig, args.params, "publish")
        logger.info("release params: %s", cfg.model_dump())
        inputs = load_inputs(
            traces=args.traces,
            traces_meta=args.traces_meta,
            heldout=args.heldout,
            stats={
                "prompts": args.prompts_stats,
                "license": args.license_stats,
                "dedup": args.dedup_stats,
                "traces": args.traces_stats,
            },
            license_summary=args.license_summary,
            dvc_lock=args.dvc_lock,
            params=args.params,
            eval_metrics=args.eval_metrics,
        )
        build_release(inputs, cfg, pub, params_excerpt(args.params), args.out)
    except (ParamsError, ReleaseInputError, ValueError) as exc:
        logger.error("release failed: %s", exc)
        return 1
    logger.info("release written to %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
