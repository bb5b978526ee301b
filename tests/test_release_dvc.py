"""`dvc repro` of the release and publish stages, as written in dvc.yaml, in a temporary git repo.

The upstream stages are replaced by the golden inputs at their dvc.yaml paths (and their dvc.lock
entries); publishing is disabled, so the run is offline.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from datasets import load_dataset

from tests.test_release import GOLDEN, PARAMS

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_dvc_repro_release_and_publish(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    for pkg in ("cards", "builders"):
        shutil.copytree(ROOT / pkg, repo / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {k: stages[k] for k in ("release", "publish")}}))
    (repo / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    (repo / "dvc.lock").write_text((GOLDEN / "dvc.lock").read_text())
    data = repo / "data"
    for stage in ("prompts", "license", "dedup", "traces"):
        (data / stage).mkdir(parents=True)
        shutil.copy(GOLDEN / f"{stage}_stats.json", data / stage / "stats.json")
    shutil.copy(GOLDEN / "traces.parquet", data / "traces" / "traces.parquet")
    shutil.copytree(GOLDEN / "meta", data / "traces" / "meta")
    shutil.copy(GOLDEN / "heldout.parquet", data / "prompts" / "heldout.parquet")
    shutil.copy(GOLDEN / "license_summary.json", data / "license" / "license_summary.json")

    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "PYTHONPATH": str(repo),
    }
    env.pop("HF_TOKEN", None)

    def run(*cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=300)

    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    assert run("git", "init", "-q").returncode == 0
    assert run(sys.executable, "-m", "dvc", "init", "-q").returncode == 0
    assert run(*git, "add", "-A").returncode == 0
    assert run(*git, "commit", "-q", "-m", "inputs").returncode == 0
    sha = run("git", "rev-parse", "HEAD").stdout.strip()

    r = run(sys.executable, "-m", "dvc", "repro", "release", "publish")
    assert r.returncode == 0, r.stdout + r.stderr
    card = (repo / "release" / "README.md").read_text()
    assert f"git commit `{sha}`" in card
    published = json.loads((data / "publish" / "published.json").read_text())
    assert published["published"] is False and published["reason"] == "publish.enabled is false"
    ds = load_dataset(str(repo / "release"), split="train", cache_dir=str(tmp_path / "cache"))
    assert ds.num_rows == 21
    # A second repro has nothing to do.
    r = run(sys.executable, "-m", "dvc", "repro", "release", "publish")
    assert r.returncode == 0 and "didn't change" in r.stdout, r.stdout
