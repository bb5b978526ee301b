"""Real DVC: a stage's params are only the keys it reads, so an `eval` edit rebuilds neither the
release nor the student. Outputs are stand-ins recorded with `dvc commit`; no stage runs."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.dvcutil import dvc_status, make_dvc_repo, resolved_stages, run_dvc


def _stand_in_outputs(repo: Path) -> None:
    for _cmd, _deps, outs in resolved_stages(repo).values():
        for out in outs:
            path = repo / out
            if path.exists():
                continue
            if path.suffix:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("{}\n" if path.suffix == ".json" else "stand-in\n")
            else:
                path.mkdir(parents=True)
                (path / "stand-in.txt").write_text("stand-in\n")


def _edit_params(repo: Path, section: str, key: str, value: object) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params[section][key] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def test_eval_params_leave_release_and_train_up_to_date(tmp_path: Path) -> None:
    repo = make_dvc_repo(tmp_path / "repo")
    _stand_in_outputs(repo)
    run_dvc(repo, "commit", "--force", "--quiet")
    assert dvc_status(repo) == {}

    _edit_params(repo, "eval", "max_new_tokens", 7)
    assert set(dvc_status(repo)) == {"eval"}

    _edit_params(repo, "train", "max_length", 96)
    assert set(dvc_status(repo)) == {"train", "eval"}

    _edit_params(repo, "release", "pretty_name", "Another name")
    assert "release" in dvc_status(repo)
