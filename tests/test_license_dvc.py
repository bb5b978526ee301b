"""`dvc repro` runs the embedded sample through prompts -> license; a policy change re-runs license only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.dvcutil import changes, dvc_status, make_dvc_repo, run_dvc

pytestmark = pytest.mark.slow


def test_repro_prompts_then_license_and_policy_change_reruns_license_only(tmp_path: Path) -> None:
    repo = make_dvc_repo(tmp_path / "repo")
    assert {"prompts", "license"} <= set(dvc_status(repo, "license"))
    run_dvc(repo, "repro", "license")
    assert dvc_status(repo, "license") == {}
    prompts_stats = repo / "data" / "prompts" / "stats.json"
    license_stats = repo / "data" / "license" / "stats.json"
    stats = json.loads(license_stats.read_text())
    funnel = stats["funnel"]
    assert funnel["rows_in"] == funnel["rows_out"] + sum(funnel["removed"].values())
    assert stats["coverage"]["input"]["tasks"] > 0 and stats["coverage"]["audit"]["tasks"] == 633
    summary = json.loads((repo / "data" / "license" / "license_summary.json").read_text())
    assert set(summary["counts"]["license_use"]) == {"commercial"}
    prompts_before = (repo / "data" / "prompts" / "prompts.parquet").read_bytes()
    written = {p: p.stat().st_mtime_ns for p in (prompts_stats, license_stats)}

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["license"]["allowed_uses"] = ["commercial", "non-commercial"]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = dvc_status(repo, "license")
    assert set(status) == {"license"}  # prompts is up to date
    assert set(changes(status, "license")["changed deps"]) == {"params.yaml"}

    run_dvc(repo, "repro", "license")
    assert dvc_status(repo, "license") == {}
    assert prompts_stats.stat().st_mtime_ns == written[prompts_stats]  # prompts did not run again
    assert license_stats.stat().st_mtime_ns != written[license_stats]  # license did
    assert (repo / "data" / "prompts" / "prompts.parquet").read_bytes() == prompts_before
    summary = json.loads((repo / "data" / "license" / "license_summary.json").read_text())
    assert summary["release"]["use"] == "non-commercial"
