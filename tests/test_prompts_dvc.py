"""The `prompts` stage under real `dvc repro` in a temporary git repository."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.dvcutil import changes, dvc_status, make_dvc_repo, run_dvc


@pytest.mark.slow
def test_dvc_repro_prompts_is_cached_and_reports(tmp_path: Path) -> None:
    repo = make_dvc_repo(tmp_path / "repo")
    assert "prompts" in dvc_status(repo, "prompts")
    run_dvc(repo, "repro", "prompts")
    assert dvc_status(repo, "prompts") == {}
    stats_path = repo / "data" / "prompts" / "stats.json"
    stats = json.loads(stats_path.read_text())
    assert stats["funnel"]["rows_out"] > 0

    written = stats_path.stat().st_mtime_ns
    run_dvc(repo, "repro", "prompts")
    assert stats_path.stat().st_mtime_ns == written  # up to date: the stage did not run again
    assert dvc_status(repo, "prompts") == {}

    metrics = json.loads(run_dvc(repo, "metrics", "show", "--json").stdout)
    shown = metrics[""]["data"]["data/prompts/stats.json"]["data"]
    assert shown["funnel"]["rows_out"] == stats["funnel"]["rows_out"]

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["prompts"]["budget_scale"] = params["prompts"]["budget_scale"] / 2
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    diff = json.loads(run_dvc(repo, "params", "diff", "--json").stdout)
    assert set(diff["params.yaml"]) == {"prompts.budget_scale"}
    status = dvc_status(repo, "prompts")
    assert set(status) == {"prompts"}
    assert set(changes(status, "prompts")) == {"changed deps"}
    assert set(changes(status, "prompts")["changed deps"]) == {"params.yaml"}
