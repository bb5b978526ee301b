"""The `prompts` stage under real `dvc repro` in a temporary git repository."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.dvcutil import make_dvc_repo, run_dvc


@pytest.mark.slow
def test_dvc_repro_prompts_is_cached_and_reports(tmp_path: Path) -> None:
    repo = make_dvc_repo(tmp_path / "repo")
    first = run_dvc(repo, "repro", "prompts")
    assert "Running stage 'prompts'" in first.stdout
    stats = json.loads((repo / "data" / "prompts" / "stats.json").read_text())
    assert stats["funnel"]["rows_out"] > 0

    again = run_dvc(repo, "repro", "prompts")
    assert "Running stage" not in again.stdout
    assert "didn't change" in again.stdout or "up to date" in again.stdout

    metrics = run_dvc(repo, "metrics", "show", "--json")
    assert "data/prompts/stats.json" in metrics.stdout

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["prompts"]["budget_scale"] = params["prompts"]["budget_scale"] / 2
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    diff = run_dvc(repo, "params", "diff")
    assert "prompts.budget_scale" in diff.stdout
    status = run_dvc(repo, "status", "prompts")
    assert "changed" in status.stdout
