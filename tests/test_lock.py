"""The committed `dvc.lock` is the demo's: it must match the code, params and commands of the
commit, so that a fresh clone's `make repro` leaves it unchanged (two clones, identical bytes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.dvcutil import ROOT, changes, dvc_status, make_dvc_repo, project_files


@pytest.mark.slow
def test_committed_lock_matches_the_code_and_params(tmp_path: Path) -> None:
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert set(lock) == set(stages), "run `make repro` and commit dvc.lock"
    repo = make_dvc_repo(tmp_path / "clone")  # no data: every out is missing, nothing else may differ
    status = dvc_status(repo)
    tracked = set(project_files())
    stale = {}
    for stage in stages:
        found = changes(status, stage)
        outs = found.pop("changed outs", None) or {}
        deps = found.pop("changed deps", None) or {}
        wrong = {
            **{p: s for p, s in outs.items() if s not in ("deleted", "not in cache")},
            # an upstream out is missing, fine; a tracked file or params.yaml differs, stale
            **{p: s for p, s in deps.items() if s != "deleted" or p in tracked},
        }
        if found or wrong:
            stale[stage] = {**found, **wrong}
    assert stale == {}, f"dvc.lock is stale: run `make repro` and commit dvc.lock; {stale}"
