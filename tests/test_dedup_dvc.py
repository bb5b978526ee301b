"""`dvc repro dedup` on the embedded sample: prompts -> license -> dedup, then a dedup-only rerun."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests.dvcutil import ROOT, make_dvc_repo, run_dvc

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (ROOT / "builders" / "license.py").exists(), reason="license stage not written yet"
    ),
    pytest.mark.skipif(not (Path(sys.executable).parent / "dvc").exists(), reason="dvc not installed"),
]


def test_repro_dedup_removes_demo_contamination_and_reruns_alone(tmp_path: Path) -> None:
    repo = make_dvc_repo(tmp_path / "repo")
    first = run_dvc(repo, "repro", "dedup").stdout
    assert "Running stage 'license'" in first and "Running stage 'dedup'" in first
    out = repo / "data" / "dedup"
    stats = json.loads((out / "stats.json").read_text())
    funnel = stats["funnel"]
    assert funnel["stage"] == "dedup"
    assert funnel["rows_in"] == funnel["rows_out"] + sum(funnel["removed"].values())
    assert stats["contaminated"]["demo_eval"] >= 1  # the demo eval file holds near-copies of sample rows
    removed = pq.read_table(out / "removed.parquet").to_pylist()
    assert any(r["reason"] == "contaminated" and r["detail"].startswith("demo_eval:") for r in removed)
    kept = pq.read_table(out / "prompts.parquet")
    assert kept.num_rows == funnel["rows_out"] and kept.schema.names[-1] == "cluster_id"
    license_rows = pq.read_metadata(repo / "data" / "license" / "prompts.parquet").num_rows
    assert funnel["rows_in"] == license_rows
    before = (out / "prompts.parquet").read_bytes()

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["dedup"]["threshold"] = 0.7
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    second = run_dvc(repo, "repro", "dedup").stdout
    assert "Running stage 'license'" not in second and "Running stage 'dedup'" in second

    params["dedup"]["threshold"] = 0.5  # the default again
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run_dvc(repo, "repro", "dedup")
    assert (out / "prompts.parquet").read_bytes() == before  # same params, same bytes
