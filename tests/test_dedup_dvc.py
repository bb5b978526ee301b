"""`dvc repro dedup` on the embedded sample: prompts -> license -> dedup, then a dedup-only rerun."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests.dvcutil import changes, dvc_status, make_dvc_repo, run_dvc

pytestmark = pytest.mark.slow


def test_repro_dedup_removes_demo_contamination_and_reruns_alone(tmp_path: Path) -> None:
    repo = make_dvc_repo(tmp_path / "repo")
    assert {"prompts", "license", "dedup"} <= set(dvc_status(repo, "dedup"))
    run_dvc(repo, "repro", "dedup")
    assert dvc_status(repo, "dedup") == {}
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
    license_stats, dedup_stats = repo / "data" / "license" / "stats.json", out / "stats.json"
    written = {p: p.stat().st_mtime_ns for p in (license_stats, dedup_stats)}

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["dedup"]["threshold"] = 0.7
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = dvc_status(repo, "dedup")
    assert set(status) == {"dedup"}
    assert set(changes(status, "dedup")["changed deps"]) == {"params.yaml"}
    run_dvc(repo, "repro", "dedup")
    assert dvc_status(repo, "dedup") == {}
    assert license_stats.stat().st_mtime_ns == written[license_stats]  # license did not run again
    assert dedup_stats.stat().st_mtime_ns != written[dedup_stats]  # dedup did

    params["dedup"]["threshold"] = 0.5  # the default again
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run_dvc(repo, "repro", "dedup")
    assert dvc_status(repo, "dedup") == {}
    assert (out / "prompts.parquet").read_bytes() == before  # same params, same bytes
