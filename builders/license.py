"""DVC stage `license`: give every prompt its license provenance and apply the license policy.

    python -m builders.license --params params.yaml --prompts data/prompts/prompts.parquet \
        --out data/license [--registry builders/licenses/registry.json]

Writes `prompts.parquet` (kept rows plus the license columns), `removed.parquet`,
`license_summary.json` and `stats.json` into `--out`; on any error nothing is written.
"""

from __future__ import annotations

import logging
from pathlib import Path

from builders.licenses.apply import (
    LICENSED_PROMPT_SCHEMA,
    REMOVED_LICENSE_SCHEMA,
    LicenseResult,
    apply_license,
)
from builders.licenses.policy import LicenseConfig, check_dataset_lists, check_teachers
from builders.licenses.registry import REGISTRY_PATH, load_registry
from core.config import load_section
from core.io import read_parquet, write_json, write_parquet
from core.stage import stage_main

logger = logging.getLogger(__name__)


def run(params: Path, prompts: Path, out: Path, registry: Path = REGISTRY_PATH) -> LicenseResult:
    """Load params, registry and prompts; check everything; then write the four outputs."""
    cfg = load_section(LicenseConfig, params, "license")
    logger.info("license params: %s", cfg.model_dump(mode="json"))
    check_teachers(cfg, str(params))
    reg = load_registry(registry)
    table = read_parquet(prompts)
    check_dataset_lists(cfg, reg, set(table["task_name"].unique().to_list()), str(params))
    result = apply_license(table, reg, cfg, source=str(prompts))
    write_parquet(result.kept, out / "prompts.parquet", LICENSED_PROMPT_SCHEMA)
    write_parquet(result.removed, out / "removed.parquet", REMOVED_LICENSE_SCHEMA)
    write_json(result.summary, out / "license_summary.json")
    write_json(result.stats, out / "stats.json")
    logger.info("license: %s", result.stats["funnel"])
    return result


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `license` stage."""
    return stage_main(run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
