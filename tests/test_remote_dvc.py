"""Share a release through a DVC remote (a local folder): nobody pays the teacher twice.

Clone A runs the pipeline to the published release and `dvc push`es; clone B, a fresh `git clone` with an
empty DVC cache, `dvc pull`s: every stage's outputs and the generation cache arrive, `dvc status` is
clean, `dvc repro` runs nothing, the traces stage run anyway sends nothing, and a larger budget sends
exactly the new prompts.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import yaml

from tests.dvcutil import clone_dvc_repo, data_files, dvc_status, git, keep_stages, make_dvc_repo, run_dvc

TEACHER = "tiny-a"


def _release_pipeline(repo: Path) -> None:
    """The pipeline to the published release (training a student is not what is shared here)."""
    keep_stages(repo, *(s for s in _stages(repo) if s not in ("train", "eval")))
    _small_demo(repo)


def _stages(repo: Path) -> list[str]:
    return list(yaml.safe_load((repo / "dvc.yaml").read_text())["stages"])


def _small_demo(repo: Path, scale: float = 1.0) -> None:
    """One teacher and short answers keep the test short; `scale` multiplies the prompt budget."""
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["traces"]["teachers"] = params["traces"]["teachers"][:1]
    params["traces"]["teachers"][0]["sampling"]["max_tokens"] = 16
    params["prompts"]["budget_scale"] *= scale
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def _ids(repo: Path) -> set[str]:
    return set(pl.read_parquet(repo / "data" / "dedup" / "prompts.parquet")["id"])


def _traces_run(repo: Path) -> dict[str, int]:
    return json.loads((repo / "data" / "traces" / "run.json").read_text())["teachers"][TEACHER]


@pytest.mark.slow
def test_a_teammate_pulls_a_release_and_pays_only_for_new_prompts(tmp_path: Path) -> None:
    a = make_dvc_repo(tmp_path / "a", prepare=_release_pipeline)
    run_dvc(a, "repro")
    run_dvc(a, "remote", "add", "-d", "team", str(tmp_path / "remote"))
    git(a, "add", "dvc.lock", ".dvc/config")
    git(a, "commit", "-qm", "release: dvc.lock and the team's remote")
    run_dvc(a, "push")
    first = _ids(a)
    assert _traces_run(a)["sent"] == len(first) > 0
    assert any((a / "data" / "traces_cache").glob("pack-*.parquet"))

    b = clone_dvc_repo(a, tmp_path / "b")
    assert not (b / "data").exists() and not any((b / ".dvc" / "cache").rglob("*.*"))
    run_dvc(b, "pull")
    assert dvc_status(b) == {}
    assert data_files(b) == data_files(a)  # every stage's outputs and the generation cache, byte for byte
    repro = run_dvc(b, "repro")
    assert "Running stage" not in repro.stdout, repro.stdout

    # Run anyway, the traces stage finds every prompt in the pulled cache: nothing is sent.
    run_dvc(b, "repro", "--force", "--single-item", "traces")
    again = _traces_run(b)
    assert again["sent"] == 0 and again["cached_before_run"] == len(first)
    assert dvc_status(b) == {}
    assert git(b, "status", "--porcelain").stdout == ""  # same outputs: the committed lock holds

    # A larger budget on B: only the prompts A never answered go to the teacher.
    _small_demo(b, scale=2.0)
    run_dvc(b, "repro")
    second = _ids(b)
    new = second - first
    assert len(new) > 0
    grown = _traces_run(b)
    assert grown["sent"] == len(new) and grown["cached_before_run"] == len(second & first)
    traces = pl.read_parquet(b / "data" / "traces" / "traces.parquet")
    removed = pl.read_parquet(b / "data" / "traces" / "removed.parquet")
    assert set(traces["id"]) | set(removed["id"]) == second
