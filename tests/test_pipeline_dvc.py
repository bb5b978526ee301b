"""The pipeline's head under real `dvc repro`: prompts → license → dedup → tiny_models → traces → verify
→ release.

After a license-policy change upstream, the rerun sends only the prompts not answered before to
the teacher (the generation cache survives DVC's deletion of the stage's outs).
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path

import polars as pl
import pytest
import yaml
from datasets import load_dataset

from tests.dvcutil import data_files, dvc_status, git, make_dvc_repo, run_dvc
from tests.hubserver import HubServer
from tests.test_publish import git as git_hub
from tests.test_publish import hub_env, run_publish, write_params


def _edit_params(repo: Path, edit) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    edit(params)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _commit_release(repo: Path, remote: Path) -> Path:
    """What a maintainer does before publishing: a default DVC remote, dvc.lock committed."""
    run_dvc(repo, "remote", "add", "-d", "team", str(remote))
    git(repo, "add", "-A")  # dvc.lock, the remote, the edited params
    git(repo, "commit", "-qm", "release")
    return repo / "dvc.lock"


def _a_second_clone_gives_the_same_release_and_publishing_it_is_a_no_op(
    repo: Path, tmp_path: Path, edit
) -> None:
    """Another fresh clone, same params: the same bytes under data/ (generation cache included) and
    release/, the same dvc.lock; publishing it under the version the first one took is a no-op."""
    other = make_dvc_repo(tmp_path / "clone2")
    _edit_params(other, edit)
    run_dvc(other, "repro", "release")
    ours, theirs = data_files(repo), data_files(other)
    assert ours.keys() == theirs.keys()
    for name in ours:
        diff = difflib.unified_diff(
            *(f[name].decode("utf-8", "replace").splitlines() for f in (ours, theirs))
        )
        assert ours[name] == theirs[name], f"{name} differs:\n" + "\n".join(list(diff)[:40])
    assert (repo / "dvc.lock").read_bytes() == (other / "dvc.lock").read_bytes()
    assert (other / "data" / "traces" / "run.json").read_bytes() != (
        repo / "data" / "traces" / "run.json"
    ).read_bytes()

    hub = HubServer(tmp_path / "hub").start()
    try:
        env = hub_env(hub, tmp_path)
        params = write_params(tmp_path / "publish.yaml", version="1.0.0")
        locks = [_commit_release(r, tmp_path / "remote") for r in (repo, other)]
        first = run_publish(env, params, repo / "release", tmp_path / "pub1.json", locks[0])
        assert first.returncode == 0, first.stderr
        refs = git_hub(hub, "for-each-ref")
        second = run_publish(env, params, other / "release", tmp_path / "pub2.json", locks[1])
        assert second.returncode == 0, second.stderr
        pub1, pub2 = (json.loads((tmp_path / f"pub{i}.json").read_text()) for i in (1, 2))
        assert pub2["already_published"] is True and pub2["commit"] == pub1["commit"]
        assert pub1["provenance"]["git_commit"] == pub2["provenance"]["git_commit"]
        assert git_hub(hub, "for-each-ref") == refs
    finally:
        hub.stop()


@pytest.mark.slow
def test_policy_change_sends_only_new_prompts_to_the_teacher(tmp_path: Path) -> None:
    repo = make_dvc_repo(tmp_path / "repo")

    def small_demo(p: dict) -> None:
        p["traces"]["teachers"] = p["traces"]["teachers"][:1]  # one teacher keeps the test short
        p["traces"]["teachers"][0]["sampling"]["max_tokens"] = 16

    _edit_params(repo, small_demo)
    run_dvc(repo, "repro", "release")
    assert dvc_status(repo, "release") == {}
    first_ids = set(pl.read_parquet(repo / "data" / "dedup" / "prompts.parquet")["id"])
    first = json.loads((repo / "data" / "traces" / "run.json").read_text())["teachers"]["tiny-a"]
    assert first["sent"] == len(first_ids) and first["cached_before_run"] == 0
    before = pl.read_parquet(repo / "data" / "traces" / "traces.parquet")
    released = load_dataset(str(repo / "release"), "tiny-a", split="train")
    assert released.num_rows == before.height  # the demo flags wrong answers, it does not drop them
    assert set(released["answer_check"]) <= {"correct", "wrong", "unverifiable"}

    _a_second_clone_gives_the_same_release_and_publishing_it_is_a_no_op(repo, tmp_path, small_demo)

    stages = ("prompts", "license", "traces", "verify")
    stats = {stage: repo / "data" / stage / "stats.json" for stage in stages}
    written = {stage: path.stat().st_mtime_ns for stage, path in stats.items()}

    _edit_params(repo, lambda p: p["license"].update(allow_unspecified=True))
    stale = set(dvc_status(repo, "release"))
    assert "license" in stale and "prompts" not in stale
    run_dvc(repo, "repro", "release")
    assert dvc_status(repo, "release") == {}
    rerun = {stage for stage, path in stats.items() if path.stat().st_mtime_ns != written[stage]}
    assert rerun == {"license", "traces", "verify"}  # prompts did not run again

    second_ids = set(pl.read_parquet(repo / "data" / "dedup" / "prompts.parquet")["id"])
    new_ids = second_ids - first_ids
    second = json.loads((repo / "data" / "traces" / "run.json").read_text())["teachers"]["tiny-a"]
    assert len(new_ids) > 0
    assert second["sent"] == len(new_ids)
    assert second["cached_before_run"] == len(second_ids & first_ids)

    after = pl.read_parquet(repo / "data" / "traces" / "traces.parquet")
    kept = before.filter(pl.col("id").is_in(list(second_ids)))
    same = after.join(kept, on=["id", "teacher"], suffix="_before")
    assert same.height == kept.height
    assert (same["response"] == same["response_before"]).all()
    assert load_dataset(str(repo / "release"), "tiny-a", split="train").num_rows == after.height
