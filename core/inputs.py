"""Inputs fixed for the whole run: what a stage read at its start is what its outputs are built from.

DVC hashes a stage's deps and params when the stage has finished, not when it started, so an edit
of `params.yaml` (or of any dep) while a stage runs would record in `dvc.lock` what did not run.
`core.stage.run_stage` pins the run's inputs:

- every document a stage reads through `core.io.read_document` (params.yaml, a recipe, a stats
  file) is read once: later reads in the same run get the same text;
- under DVC (`DVC_STAGE` set), the stage's deps in dvc.yaml are noted (size and mtime of every file);
- before any output is renamed into place (`core.io.atomic_path`) and when the stage ends, the run
  stops with one line if a pinned document's bytes or a dep's files changed under it; a file the
  run itself wrote is its output, not a pinned input.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import yaml

from core.errors import PipelineError
from core.stages import entry_paths, resolve, variables

logger = logging.getLogger(__name__)


class InputsChanged(PipelineError):
    """A document or dep the stage read changed while it ran."""


Signature = tuple[tuple[str, int, int], ...] | None


def signature(path: Path) -> Signature:
    """(relative path, size, mtime_ns) of the file, or of every file under the folder; None if absent."""
    try:
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
            return tuple((p.relative_to(path).as_posix(), *_stat(p)) for p in files)
        return (("", *_stat(path)),)
    except FileNotFoundError:
        return None


def _stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def dvc_deps(root: Path, stage: str) -> list[Path]:
    """The dep paths of `stage` in `root`/dvc.yaml, its `${...}` variables resolved from `vars`.

    A dep whose variables cannot be resolved here (a form of `vars` DVC knows and this does not)
    is left out: this guard is a best effort beside DVC, never a second DVC.
    """
    try:
        doc = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return []
    spec = (doc.get("stages") or {}).get(stage)
    if not isinstance(spec, dict):
        return []
    names = variables(doc, spec)
    wdir = root / str(spec.get("wdir") or ".")
    deps = []
    for text in entry_paths(spec.get("deps")):
        try:
            deps.append(wdir / resolve(text, names))
        except KeyError:
            continue
    return deps


class RunInputs:
    """The documents a run read (their text, read once) and its DVC deps (their files' stats)."""

    def __init__(self, deps: list[Path]) -> None:
        self.texts: dict[Path, bytes] = {}
        self.deps = {p: signature(p) for p in deps}

    def read_bytes(self, path: Path) -> bytes:
        """The bytes of `path` as this run first read them."""
        key = path.resolve()
        if key not in self.texts:
            self.texts[key] = path.read_bytes()
        return self.texts[key]

    def written(self, path: Path) -> None:
        """`path` is an output of this run: no longer an input to hold fixed."""
        key = path.resolve()
        self.texts.pop(key, None)
        self.deps = {p: s for p, s in self.deps.items() if p.resolve() != key}

    def changed(self) -> list[str]:
        """The pinned documents and deps that differ from what the run read."""
        out = []
        for path, data in self.texts.items():
            try:
                now = path.read_bytes()
            except OSError:
                now = None
            if now != data:
                out.append(_show(path))
        out += [_show(p) for p, sig in self.deps.items() if signature(p) != sig]
        return sorted(set(out))

    def check(self) -> None:
        """Raise `InputsChanged` naming what changed since the run read it."""
        changed = self.changed()
        if changed:
            raise InputsChanged(
                f"{', '.join(changed)} changed while the stage ran; it keeps what it read at its start, "
                "so nothing more is written and DVC records nothing: run it again"
            )


def _show(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


_active: RunInputs | None = None


@contextlib.contextmanager
def pinned(stage: str) -> Iterator[RunInputs]:
    """Pin the inputs of stage `stage` for the block (its deps too when DVC runs it)."""
    global _active
    root = os.environ.get("DVC_ROOT")
    under_dvc = os.environ.get("DVC_STAGE") is not None and root is not None
    deps = dvc_deps(Path(root), os.environ["DVC_STAGE"].rpartition(":")[2]) if under_dvc else []
    previous, _active = _active, RunInputs(deps)
    try:
        yield _active
    finally:
        _active = previous


def read_bytes(path: str | Path) -> bytes:
    """`path`'s bytes, read once per stage run (every read after the first gets the same bytes)."""
    return _active.read_bytes(Path(path)) if _active is not None else Path(path).read_bytes()


def before_write(target: str | Path) -> None:
    """Called before an output is renamed into place: stop if an input changed; `target` is an output."""
    if _active is None:
        return
    _active.written(Path(target))
    _active.check()
