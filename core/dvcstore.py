"""Where DVC keeps the committed bytes of a file it tracks (to name a good copy of a damaged file).

A file inside a directory out is listed, with its md5, in the out's `.dir` object; both live in the
project's DVC cache (`.dvc/cache/files/md5/ab/cdef...`, or where `.dvc/config` puts the cache).
Read-only: nothing here changes the workspace or the cache.
"""

from __future__ import annotations

import configparser
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import yaml

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GoodCopy:
    """The DVC cache object with the committed bytes of a tracked file."""

    obj: Path  # the object in DVC's cache
    out: Path  # the DVC out (folder or file) that holds the file, relative to the project
    # whether the out's folder also holds files dvc.lock does not list (`dvc checkout` would refuse)
    unsaved: bool


def project_root(path: Path) -> Path | None:
    """The nearest folder at or above `path` holding `.dvc/`."""
    return next((p for p in [path, *path.parents] if (p / ".dvc").is_dir()), None)


def cache_dir(root: Path) -> Path:
    """The project's DVC cache folder (`.dvc/config[.local]` `[cache] dir`, else `.dvc/cache`)."""
    found = root / ".dvc" / "cache"
    for name in ("config", "config.local"):
        parser = configparser.ConfigParser()
        try:
            parser.read(root / ".dvc" / name, encoding="utf-8")
        except configparser.Error:
            continue
        if parser.has_option("cache", "dir"):
            found = (root / ".dvc" / parser.get("cache", "dir")).resolve()
    return found


def _object(cache: Path, md5: str) -> Path | None:
    for candidate in (cache / "files" / "md5" / md5[:2] / md5[2:], cache / md5[:2] / md5[2:]):
        if candidate.is_file():
            return candidate
    return None


def _outs(root: Path) -> list[tuple[Path, str]]:
    """(out path, md5) of every out that dvc.lock records."""
    try:
        lock = yaml.safe_load((root / "dvc.lock").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return []
    found = []
    for stage in (lock.get("stages") or {}).values():
        for out in (stage or {}).get("outs") or []:
            if isinstance(out, dict) and out.get("path") and out.get("md5"):
                found.append((Path(out["path"]), str(out["md5"])))
    return found


def good_copy(path: Path) -> GoodCopy | None:
    """DVC's committed copy of `path` when dvc.lock records it and the local DVC cache holds it."""
    path = path.resolve()
    root = project_root(path.parent)
    if root is None:
        return None
    cache = cache_dir(root)
    for out, md5 in _outs(root):
        folder = (root / out).resolve()
        if path == folder and not md5.endswith(".dir"):
            obj = _object(cache, md5)
            return GoodCopy(obj, out, False) if obj else None
        if folder not in path.parents or not md5.endswith(".dir"):
            continue
        listing_obj = _object(cache, md5)
        if listing_obj is None:
            return None
        try:
            listing = {e["relpath"]: e["md5"] for e in json.loads(listing_obj.read_text(encoding="utf-8"))}
        except (OSError, ValueError, KeyError, TypeError):
            return None
        rel = path.relative_to(folder).as_posix()
        obj = _object(cache, listing[rel]) if rel in listing else None
        if obj is None:
            return None
        present = {
            p.relative_to(folder).as_posix()
            for p in folder.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        }
        return GoodCopy(obj, out, bool(present - set(listing)))
    return None
