"""Run the real DVC pipeline in a temporary git repository holding a copy of the project."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ("dvc.yaml", "params.yaml", "pyproject.toml")
PROJECT_DIRS = ("builders", "dedup", "cards", "train", "recipes", "sample")


def dvc_env() -> dict[str, str]:
    """The environment for `dvc` subprocesses: the venv's python first on PATH, offline, no analytics."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = ""
    env.update(
        {
            "DVC_NO_ANALYTICS": "1",
            "HF_HUB_OFFLINE": "1",
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@t",
        }
    )
    return env


def make_dvc_repo(dest: Path) -> Path:
    """Copy the project into `dest`, then `git init`, `dvc init` and commit it."""
    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in PROJECT_FILES:
        shutil.copy2(ROOT / name, dest / name)
    for name in PROJECT_DIRS:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    git(dest, "init", "-q")
    run_dvc(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", "project")
    return dest


def git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run git in `repo`; raise with its output on failure."""
    return _run(["git", *args], repo)


def run_dvc(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the venv's `dvc` CLI in `repo`."""
    return _run([str(Path(sys.executable).parent / "dvc"), *args], repo, check=check)


def _run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=dvc_env(), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc
