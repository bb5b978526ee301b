"""The streaming `license` stage against the in-memory rules it replaced (`tests/license_oracle.py`)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
import yaml

from builders.license.__main__ import main
from builders.license.apply import LICENSED_PROMPT_SCHEMA, REMOVED_LICENSE_SCHEMA
from builders.license.policy import LicenseConfig
from builders.license.registry import load_registry
from core.io import write_json, write_parquet
from core.schema import PROMPT_SCHEMA
from tests import license_oracle
from tests.test_prompts_stream import REAL, config

OUTPUTS = ("prompts.parquet", "removed.parquet", "license_summary.json", "stats.json")
TERMS = {"license": "Apache-2.0", "outputs_may_train_models": True, "commercial_use": True, "url": None}


@pytest.fixture(scope="module")
def prompts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real FLAN-format prompts (the prompts stage on tests/data/prompts_real), written in row groups
    of 64 so the stream has many batches."""
    from builders.prompts.recipe import build_prompts

    df, _, _, _ = build_prompts(config(source=str(REAL), budget_scale=1.0, workers=1), 7)
    path = tmp_path_factory.mktemp("p") / "prompts.parquet"
    pq.write_table(df.to_arrow().cast(PROMPT_SCHEMA), path, row_group_size=64)
    return path


@pytest.mark.parametrize(
    "section",
    [
        {},  # the default policy: commercial only, removals of several kinds
        {"allowed_uses": ["commercial", "non-commercial", "academic-only"], "allow_unknown": True,
         "allow_unspecified": True},
        {"deny_datasets": ["fc-cot-cot_gsm8k"], "allow_share_alike": False},
    ],
)  # fmt: skip
def test_stream_gives_the_in_memory_bytes(tmp_path: Path, prompts: Path, section: dict) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"license": {**section, "teachers": {"a": TERMS}}}))
    cfg = LicenseConfig.model_validate({**section, "teachers": {"a": TERMS}})
    result = license_oracle.apply_license(pl.read_parquet(prompts), load_registry(), cfg, source=str(prompts))
    expected = tmp_path / "oracle"
    write_parquet(result.kept, expected / "prompts.parquet", LICENSED_PROMPT_SCHEMA)
    write_parquet(result.removed, expected / "removed.parquet", REMOVED_LICENSE_SCHEMA)
    write_json(result.summary, expected / "license_summary.json")
    write_json(result.stats, expected / "stats.json")
    assert main(["--params", str(params), "--prompts", str(prompts), "--out", str(tmp_path / "out")]) == 0
    for name in OUTPUTS:
        assert (tmp_path / "out" / name).read_bytes() == (expected / name).read_bytes(), name
    assert result.removed.height > 0 or section


def test_unsorted_input_is_licensed_in_memory(tmp_path: Path, prompts: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"license": {"teachers": {"a": TERMS}}}))
    shuffled = tmp_path / "shuffled.parquet"
    pl.read_parquet(prompts).sample(fraction=1.0, shuffle=True, seed=1).write_parquet(
        shuffled, row_group_size=50
    )
    for name, path in (("sorted", prompts), ("shuffled", shuffled)):
        assert main(["--params", str(params), "--prompts", str(path), "--out", str(tmp_path / name)]) == 0
    for name in OUTPUTS:
        assert (tmp_path / "sorted" / name).read_bytes() == (tmp_path / "shuffled" / name).read_bytes(), name
