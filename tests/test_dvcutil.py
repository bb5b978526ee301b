"""The DVC test repositories import the project from their own copy, never from the working tree."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.dvcutil import dvc_env, make_dvc_repo, project_files, run_python


def test_copy_holds_every_package_and_the_stage_modules_import_from_it(tmp_path: Path) -> None:
    def drop_core(repo: Path) -> None:  # a package the copy lacks must not be found elsewhere
        shutil.rmtree(repo / "core")

    files = project_files()
    stage = "builders/prompts/__main__.py"
    assert {"dvc.yaml", "params.yaml", ".dvc/config", "core/stage.py", stage} <= set(files)
    repo = make_dvc_repo(tmp_path / "repo")
    assert all((repo / name).is_file() for name in files)
    probe = "import builders.prompts.__main__ as m, core; print(core.__file__); print(m.__file__)"
    out = run_python(repo, "-c", probe).stdout.split()
    assert [Path(p).resolve().relative_to(repo.resolve()).as_posix() for p in out] == [
        "core/__init__.py",
        "builders/prompts/__main__.py",
    ]
    assert run_python(repo, "-m", "builders.prompts", "--help").returncode == 0  # as dvc.yaml runs it

    bare = make_dvc_repo(tmp_path / "bare", prepare=drop_core)
    r = run_python(bare, "-c", "import core", check=False)
    assert r.returncode != 0 and "No module named 'core'" in r.stderr
    r = run_python(bare, "-m", "builders.prompts", "--help", check=False)
    assert r.returncode != 0 and "No module named 'core'" in r.stderr
    # without the helper's sitecustomize, the project's install (`pip install -e .`) would find it
    env = {**dvc_env(bare), "PYTHONPATH": str(bare)}
    found = subprocess.run(
        [sys.executable, "-c", "import core; print(core.__file__)"],
        cwd=bare,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert not Path(found).resolve().is_relative_to(bare.resolve())
