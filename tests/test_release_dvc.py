"""`dvc repro` of the release and publish stages, as written in dvc.yaml, in a temporary git repo.

The filtering stages upstream are frozen (DVC records their outputs, never runs them) and their
outputs are the golden inputs at their dvc.yaml paths; publishing is disabled, so the run is offline.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from datasets import load_dataset

from tests.dvcutil import dvc_status, freeze_stages, git, keep_stages, make_dvc_repo, run_dvc
from tests.test_release import GOLDEN, PARAMS, STAGES


def golden_pipeline(repo: Path) -> None:
    """dvc.yaml with the filtering stages (frozen), release and publish; the golden upstream outputs."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    (repo / "params.yaml").write_text(yaml.safe_dump({**params, **PARAMS}, sort_keys=False))
    data = repo / "data"
    for stage in STAGES:
        (data / stage).mkdir(parents=True)
        shutil.copy(GOLDEN / f"{stage}_stats.json", data / stage / "stats.json")
    shutil.copy(GOLDEN / "traces.parquet", data / "verify" / "traces.parquet")  # the verified table
    shutil.copytree(GOLDEN / "meta", data / "traces" / "meta")
    shutil.copy(GOLDEN / "heldout.parquet", data / "prompts" / "heldout.parquet")
    shutil.copy(GOLDEN / "license_summary.json", data / "license" / "license_summary.json")
    keep_stages(repo, *STAGES, "release", "publish")
    freeze_stages(repo, *STAGES)


@pytest.mark.slow
def test_dvc_repro_release_and_publish(tmp_path: Path) -> None:
    repo = make_dvc_repo(tmp_path / "repo", prepare=golden_pipeline)
    sha = git(repo, "rev-parse", "HEAD").stdout.strip()
    assert {"release", "publish"} <= set(dvc_status(repo))

    run_dvc(repo, "repro", "release", "publish")
    assert dvc_status(repo) == {}
    card = repo / "release" / "README.md"
    text = card.read_text()
    assert sha not in text  # the card is a function of the declared inputs; publish names the commit
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["release"]
    data_deps = [d for d in lock["deps"] if d["path"].startswith("data/") and "md5" in d]
    assert len(data_deps) >= 8
    for dep in data_deps:
        if dep["md5"].endswith(".dir"):  # the card lists a folder's files one by one
            assert f"| `{dep['path']}/" in text
        else:
            assert f"| `{dep['path']}` | `{dep['md5']}` |" in text, dep
    published_path = repo / "data" / "publish" / "published.json"
    published = json.loads(published_path.read_text())
    assert published["published"] is False and published["reason"] == "publish.enabled is false"
    ds = load_dataset(str(repo / "release"), split="train", cache_dir=str(tmp_path / "cache"))
    assert ds.num_rows == 21 and "answer_check" in ds.column_names

    # A second repro has nothing to do.
    written = {p: p.stat().st_mtime_ns for p in (card, published_path)}
    run_dvc(repo, "repro", "release", "publish")
    assert dvc_status(repo) == {}
    assert {p: p.stat().st_mtime_ns for p in written} == written
