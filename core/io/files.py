"""Atomic files and the documents a stage reads (params, recipes, stats).

A stage writes each output to a temporary name beside its target and renames it into place,
so an interrupted or failed run leaves no partial file.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from core import inputs
from core.errors import InputError, PipelineError

logger = logging.getLogger(__name__)


def remove_path(path: Path) -> None:
    """Delete a file, link or folder tree if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(folder: Path, prefix: str) -> list[Path]:
    """Remove `<prefix>.<pid>.*.tmp` files and folders in `folder` whose writer is gone; return them.

    A writer killed mid-write (`kill -9`) leaves its temp behind; the next writer cleans it up.
    Temps of a live process (another writer of the same folder) are left alone.
    """
    removed = []
    for tmp in sorted(folder.glob(f"{glob.escape(prefix)}.*.tmp")):
        pid = tmp.name[len(prefix) + 1 :].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue
        remove_path(tmp)
        removed.append(tmp)
    if removed:
        logger.info(
            "removed %d stale temp path(s) in %s: %s", len(removed), folder, [p.name for p in removed]
        )
    return removed


@contextlib.contextmanager
def atomic_path(target: str | Path, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds.

    The temp is `.<name>.<pid>.<random>.tmp` in `target`'s folder; temps of killed writers of the
    same target are removed first.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target.parent, f".{target.name}")
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent))
    work = tmp if is_dir else tmp / target.name
    try:
        yield work
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        inputs.before_write(target)
        os.replace(work, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader refusing a key given twice in one mapping (as DVC does)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool | None):
                continue  # an unhashable key: the base loader names it
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    """Parse YAML like `yaml.safe_load`, refusing duplicate keys."""
    return yaml.load(text, Loader=_UniqueKeyLoader)


def read_document(path: str | Path, *, what: str = "file", error: type[PipelineError] = InputError) -> Any:
    """Parse a JSON (`.json`) or YAML file; a missing, non-UTF-8 or malformed file raises `error` naming it.

    Within a stage run the file is read once (`core.inputs`): every later read gets the same text.
    """
    path = Path(path)
    try:
        text = inputs.read_bytes(path).decode("utf-8")
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise error(f"{path}: {what} is a folder, not a file") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: {what} is not UTF-8 text (byte {exc.start})") from None
    is_json = path.suffix == ".json"
    try:
        return json.loads(text) if is_json else load_yaml(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise error(f"{path}: not valid {'JSON' if is_json else 'YAML'}: {_parse_error(exc)}") from None


def _parse_error(exc: Exception) -> str:
    """A parser's complaint on one line, with the line and column it points at."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"{exc.problem or exc.context} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(exc).split())


def file_md5(path: str | Path) -> str:
    """The md5 of a file's bytes, as DVC records it in dvc.lock."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "md5").hexdigest()


def write_json(obj: Any, path: str | Path) -> None:
    """Write `obj` as sorted, indented JSON atomically (DVC metrics, summaries, meta files)."""
    text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_text(text: str, path: str | Path) -> None:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
