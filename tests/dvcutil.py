"""Run the real DVC pipeline in a temporary git repository holding a copy of the project.

The one way the tests build a DVC repository: `make_dvc_repo` copies the project's files as git
lists them (so a new package is included without editing this file), lets the test adjust them,
then commits. `dvc` and the stages it runs import the project from that copy only:

- `PYTHONPATH` is the copy (and nothing of the caller's), so it comes first on `sys.path`;
- the venv's editable install (`pip install -e .`) would still resolve a top-level package that the
  copy lacks from the working tree it was installed from: a `sitecustomize` in a folder beside the
  copy (also on `PYTHONPATH`) removes its import hooks at interpreter start, in `dvc` and in every
  `python -m <package>.<stage>` it runs. dvc.yaml's commands are unchanged (`make repro` runs them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

_SITECUSTOMIZE = '''"""Written by tests/dvcutil.py: drop the editable install's import hooks, so that the
project is imported from PYTHONPATH's copy only (a module missing there is missing)."""
import sys


def _editable(obj) -> bool:
    return str(getattr(obj, "__module__", "")).startswith("__editable__")


sys.meta_path[:] = [f for f in sys.meta_path if not _editable(f)]
sys.path_hooks[:] = [h for h in sys.path_hooks if not _editable(h)]
sys.path[:] = [p for p in sys.path if not str(p).startswith("__editable__")]
sys.path_importer_cache.clear()
'''


def project_files(root: Path = ROOT) -> list[str]:
    """The project's files as git sees them: tracked, plus untracked ones that .gitignore does not exclude.

    (What the next commit holds; a tracked file deleted in the working tree is left out.)
    """
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted({name for name in out.split("\0") if name and (root / name).is_file()})


def site_dir(repo: Path) -> Path:
    """The folder beside `repo` that holds the `sitecustomize` (outside the repo: git never sees it)."""
    return repo.parent / f".{repo.name}-site"


def dvc_env(repo: Path) -> dict[str, str]:
    """The environment for subprocesses in `repo`: the venv first on PATH, `repo` first on sys.path,
    offline, no analytics, no Hub token, a fixed git identity and date."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH", "HF_TOKEN")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = f"{repo}{os.pathsep}{site_dir(repo)}"
    env.update(
        {
            "DVC_NO_ANALYTICS": "1",
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@t",
            # and a fixed date: the same files commit to the same sha, as two clones of one commit
            "GIT_AUTHOR_DATE": "2023-11-01T00:00:00Z",
            "GIT_COMMITTER_DATE": "2023-11-01T00:00:00Z",
        }
    )
    return env


def write_site(repo: Path) -> None:
    """The `sitecustomize` beside `repo` (see the module docstring)."""
    site = site_dir(repo)
    site.mkdir(parents=True, exist_ok=True)
    (site / "sitecustomize.py").write_text(_SITECUSTOMIZE, encoding="utf-8")


def make_dvc_repo(dest: Path, prepare: Callable[[Path], None] | None = None) -> Path:
    """Copy the project into `dest`, call `prepare(dest)`, then `git init`, `dvc init` and commit.

    `prepare` edits the copy before the commit (a smaller dvc.yaml, other params, input files).
    The project tracks `.dvc/config`, so the copy is already a DVC project as a clone is; `dvc init`
    runs only when `prepare` removed `.dvc`.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for name in project_files():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    write_site(dest)
    if prepare is not None:
        prepare(dest)
    git(dest, "init", "-q")
    if not (dest / ".dvc").is_dir():
        run_dvc(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", "project")
    return dest


def data_files(repo: Path) -> dict[str, bytes]:
    """Every file under `repo`'s data/ and release/ but the run records (`run.json`: wall times,
    never in dvc.lock, never pushed) and the hidden files .dvcignore keeps out of DVC's outs (a
    cache's `.writer.lock`: who ran it, when)."""
    return {
        p.relative_to(repo).as_posix(): p.read_bytes()
        for folder in (repo / "data", repo / "release")
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "run.json" and not p.name.startswith(".")
    }


def clone_dvc_repo(src: Path, dest: Path) -> Path:
    """`git clone src dest`: a teammate's fresh checkout (an empty DVC cache), importing from `dest`."""
    subprocess.run(["git", "clone", "-q", str(src), str(dest)], check=True, capture_output=True)
    write_site(dest)
    return dest


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run git in `repo`; raise with its output on failure."""
    return run(repo, "git", *args, check=check)


def run_dvc(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the venv's `dvc` CLI in `repo`."""
    return run(repo, str(BIN / "dvc"), *args, check=check)


def run_python(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `python` (the venv's, found on PATH as a stage's command finds it) in `repo`."""
    return run(repo, "python", *args, check=check)


def keep_stages(repo: Path, *names: str) -> None:
    """Rewrite `repo`'s dvc.yaml to the stages `names` (its `vars` kept)."""
    doc = yaml.safe_load((repo / "dvc.yaml").read_text())
    kept = {"vars": doc.get("vars", []), "stages": {k: doc["stages"][k] for k in names}}
    (repo / "dvc.yaml").write_text(yaml.safe_dump(kept, sort_keys=False))


def freeze_stages(repo: Path, *names: str) -> None:
    """Mark the stages `names` of `repo`'s dvc.yaml `frozen`: `dvc repro` never runs them, it records
    the deps and outputs it finds. One that is missing is made empty (a file when its name has a
    suffix, else a folder holding one empty file), so the test provides only the outputs it reads."""
    from core.stages import entry_paths, resolve, variables

    doc = yaml.safe_load((repo / "dvc.yaml").read_text())
    for name in names:
        spec = doc["stages"][name]
        spec["frozen"] = True
        for out in (
            entry_paths(spec.get("deps")) + entry_paths(spec.get("outs")) + entry_paths(spec.get("metrics"))
        ):
            path = repo / resolve(out, variables(doc, spec))
            if not path.exists():
                folder = path.parent if path.suffix else path
                folder.mkdir(parents=True, exist_ok=True)
                (path if path.suffix else path / "empty").touch()
    (repo / "dvc.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


def resolved_stages(repo: Path) -> dict[str, tuple[str, list[str], list[str]]]:
    """Stage -> (command, deps, outs incl. metrics and plots), dvc.yaml's `vars` interpolated by DVC."""
    from dvc.repo import Repo

    with Repo(str(repo)) as dvc:
        return {
            s.name: (s.cmd, [d.def_path for d in s.deps], [o.def_path for o in s.outs])
            for s in dvc.index.stages
        }


def dvc_status(repo: Path, *targets: str) -> dict[str, Any]:
    """`dvc status --json` of `targets` and the stages upstream of them (everything when none).

    Stage name -> the list of what changed; `{}` when all is up to date.
    """
    args = ["status", "--json", *(["--with-deps", *targets] if targets else [])]
    return json.loads(run_dvc(repo, *args).stdout)


def changes(status: dict[str, Any], stage: str) -> dict[str, Any]:
    """What `dvc status --json` lists for `stage`, as one dict: kind ("changed deps", "changed outs",
    "changed command", ...) -> its details (path -> state; None for a bare kind)."""
    out: dict[str, Any] = {}
    for item in status.get(stage, []):
        out.update({item: None} if isinstance(item, str) else item)
    return out


def run(repo: Path, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `cmd` in `repo` with `dvc_env(repo)`; raise with its output on failure when `check`."""
    proc = subprocess.run(list(cmd), cwd=repo, env=dvc_env(repo), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc
