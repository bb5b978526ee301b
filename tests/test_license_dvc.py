"""`dvc repro` runs the embedded sample through prompts -> license; a policy change re-runs license only."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (ROOT / "builders" / "prompts.py").exists(), reason="the prompts stage is not written yet"
    ),
    pytest.mark.skipif(not (BIN / "dvc").exists(), reason=f"dvc is not installed beside {sys.executable}"),
]


def _sh(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("dvc_license")
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy2(ROOT / name, repo / name)
    for name in ("builders", "recipes", "sample"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    _sh(["git", "init", "-q"], repo)
    _sh([str(BIN / "dvc"), "init", "-q"], repo)
    return repo


def test_repro_prompts_then_license_and_policy_change_reruns_license_only(repo: Path) -> None:
    first = _sh([str(BIN / "dvc"), "repro", "license"], repo)
    assert "Running stage 'prompts'" in first and "Running stage 'license'" in first
    stats = json.loads((repo / "data" / "license" / "stats.json").read_text())
    funnel = stats["funnel"]
    assert funnel["rows_in"] == funnel["rows_out"] + sum(funnel["removed"].values())
    assert stats["coverage"]["input"]["tasks"] > 0 and stats["coverage"]["audit"]["tasks"] == 633
    summary = json.loads((repo / "data" / "license" / "license_summary.json").read_text())
    assert set(summary["counts"]["license_use"]) == {"commercial"}
    prompts_before = (repo / "data" / "prompts" / "prompts.parquet").read_bytes()

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["license"]["allowed_uses"] = ["commercial", "non-commercial"]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = _sh([str(BIN / "dvc"), "status", "license"], repo)
    assert "license:" in status and "prompts:" not in status

    second = _sh([str(BIN / "dvc"), "repro", "license"], repo)
    assert "Running stage 'prompts'" not in second
    assert "Stage 'prompts' didn't change, skipping" in second
    assert "Running stage 'license'" in second
    assert (repo / "data" / "prompts" / "prompts.parquet").read_bytes() == prompts_before
    summary = json.loads((repo / "data" / "license" / "license_summary.json").read_text())
    assert summary["release"]["use"] == "non-commercial"
