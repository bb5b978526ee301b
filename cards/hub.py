"""Upload a release folder to the Hub as one commit, tagged `v<version>` (stage `publish`).

A tag is never moved: when `v<version>` exists with the same files the run is a no-op, and when it
exists with different files the run fails before uploading anything. When `main` already holds
exactly these files (a run that died between its commit and its tag) the commit is tagged, not
repeated. The token is never printed, logged or written.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import field_validator

from core.config import StageConfig
from core.errors import PipelineError

logger = logging.getLogger(__name__)

# Semantic versioning 2.0 without build metadata ("+..." has no place in a tag name here).
SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
)
REPO_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?")
HUB_MANAGED = frozenset({".gitattributes"})  # created by the Hub with the repository; never deleted


class PublishError(PipelineError):
    """Publishing was refused; nothing was uploaded."""


class PublishConfig(StageConfig):
    """The `publish:` section of params.yaml."""

    repo_id: str
    version: str
    private: bool = False
    enabled: bool = False

    @field_validator("repo_id")
    @classmethod
    def _repo_id(cls, v: str) -> str:
        parts = v.split("/")
        if len(parts) != 2 or not all(REPO_NAME.fullmatch(p) for p in parts) or ".." in v or "--" in v:
            raise ValueError(f"invalid Hub repo id {v!r}: expected 'namespace/name' (letters, digits, . _ -)")
        return v

    @field_validator("version")
    @classmethod
    def _semver(cls, v: str) -> str:
        if not SEMVER.fullmatch(v):
            raise ValueError(
                f"invalid version {v!r}: expected a semantic version like 1.2.0 (no leading 'v')"
            )
        return v

    @property
    def tag(self) -> str:
        return f"v{self.version}"


@dataclass(frozen=True)
class ReleaseFile:
    """One file of the release folder, with the digests the Hub reports."""

    path: str  # posix path inside the repository
    local: Path
    size: int
    git_sha1: str
    sha256: str


def release_file(path: str, local: Path, data: bytes) -> ReleaseFile:
    """The entry for `data`, stored at `local`, as the repository's `path`."""
    git_sha1 = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    return ReleaseFile(path, local, len(data), git_sha1, hashlib.sha256(data).hexdigest())


def scan_release(folder: Path) -> list[ReleaseFile]:
    """Every file of the release folder, sorted by path; errors when it is missing or not a release."""
    if not folder.is_dir():
        raise PublishError(f"{folder}: release folder not found; run the release stage first")
    files = []
    for p in sorted(folder.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(folder).as_posix()
        if any(part.startswith(".") for part in rel.split("/")):
            raise PublishError(f"{folder}: unexpected hidden file {rel} in the release")
        files.append(release_file(rel, p, p.read_bytes()))
    paths = {f.path for f in files}
    if "README.md" not in paths:
        raise PublishError(f"{folder}: the release has no README.md (empty or incomplete release)")
    if not any(p.startswith("data/") and p.endswith(".parquet") for p in paths):
        raise PublishError(f"{folder}: the release has no data/**/*.parquet files (empty release)")
    return files


def same_content(local: list[ReleaseFile], remote: list[Any]) -> bool:
    """Whether the remote files (RepoFile entries, Hub-managed files aside) equal the local ones."""
    remote_files = {r.path: r for r in remote if hasattr(r, "blob_id") and r.path not in HUB_MANAGED}
    if set(remote_files) != {f.path for f in local}:
        return False
    for f in local:
        r = remote_files[f.path]
        if r.lfs is not None:
            if r.lfs.sha256 != f.sha256:
                return False
        elif r.blob_id != f.git_sha1:
            return False
    return True


def plan_summary(cfg: PublishConfig, files: list[ReleaseFile]) -> dict[str, Any]:
    """What a publish would upload (no secrets)."""
    return {
        "repo_id": cfg.repo_id,
        "tag": cfg.tag,
        "private": cfg.private,
        "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in files],
        "total_bytes": sum(f.size for f in files),
    }


def with_card(files: list[ReleaseFile], card: str, folder: Path) -> list[ReleaseFile]:
    """`files` with README.md replaced by `card`, written into `folder`."""
    path = folder / "README.md"
    data = card.encode("utf-8")
    path.write_bytes(data)
    readme = release_file("README.md", path, data)
    return [readme if f.path == "README.md" else f for f in files]


def publish(
    files: list[ReleaseFile],
    cfg: PublishConfig,
    token: str,
    endpoint: str | None = None,
    source: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Upload `files` as one commit on `main` and tag it; returns what published.json records.

    `source`: (short, long) descriptions of what built the release, added to the commit's message
    and description."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    api = HfApi(endpoint=endpoint, token=token)
    repo_type = "dataset"
    base = api.endpoint.rstrip("/")
    url = f"{base}/datasets/{cfg.repo_id}/tree/{cfg.tag}"

    try:
        refs = api.list_repo_refs(cfg.repo_id, repo_type=repo_type)
    except RepositoryNotFoundError:
        refs = None
    if refs is not None:
        tags = {t.name: t.target_commit for t in refs.tags}
        if cfg.tag in tags:
            sha = tags[cfg.tag]
            remote = list(api.list_repo_tree(cfg.repo_id, repo_type=repo_type, revision=sha, recursive=True))
            if not same_content(files, remote):
                raise PublishError(
                    f"tag {cfg.tag} already exists on {cfg.repo_id} with different content; tags are never"
                    " moved: bump publish.version to publish this release"
                )
            logger.info("tag %s on %s already has exactly this release: nothing to do", cfg.tag, cfg.repo_id)
            return _published(cfg, sha, url, already=True)

    api.create_repo(cfg.repo_id, repo_type=repo_type, private=cfg.private, exist_ok=True)
    refs = api.list_repo_refs(cfg.repo_id, repo_type=repo_type)
    head = next((b.target_commit for b in refs.branches if b.name == "main"), None)
    remote: list[Any] = []
    if head is not None:
        remote = list(api.list_repo_tree(cfg.repo_id, repo_type=repo_type, revision=head, recursive=True))
    if head is not None and same_content(files, remote):
        logger.info(
            "main of %s already holds exactly this release (a run stopped before its tag)", cfg.repo_id
        )
        sha = head
    else:
        remote_paths = {r.path for r in remote if hasattr(r, "blob_id")}
        deletions = sorted(remote_paths - {f.path for f in files} - HUB_MANAGED)
        operations: list[Any] = [
            CommitOperationAdd(path_in_repo=f.path, path_or_fileobj=str(f.local)) for f in files
        ]
        operations += [CommitOperationDelete(path_in_repo=p) for p in deletions]
        logger.info(
            "publishing %d file(s), deleting %d, to %s as %s",
            len(files),
            len(deletions),
            cfg.repo_id,
            cfg.tag,
        )
        described = f"Dataset release {cfg.tag}: {len(files)} file(s), {len(deletions)} deletion(s)."
        sha = api.create_commit(
            cfg.repo_id,
            operations=operations,
            commit_message=f"Release {cfg.tag}" + (f" ({source[0]})" if source else ""),
            commit_description=described + (f" {source[1]}" if source else ""),
            repo_type=repo_type,
            revision="main",
            parent_commit=head,
        ).oid
    api.create_tag(
        cfg.repo_id, tag=cfg.tag, revision=sha, repo_type=repo_type, tag_message=f"Release {cfg.tag}"
    )
    logger.info("published %s at commit %s: %s", cfg.tag, sha, url)
    return _published(cfg, sha, url, already=False)


def _published(cfg: PublishConfig, sha: str, url: str, *, already: bool) -> dict[str, Any]:
    """What published.json records of a published tag."""
    return {"published": True, "repo_id": cfg.repo_id, "tag": cfg.tag, "commit": sha, "url": url,
            "already_published": already}  # fmt: skip


def hub_errors() -> tuple[type[BaseException], ...]:
    """The network errors of huggingface_hub's HTTP client (httpx2 in 2.x, httpx in 1.x), and
    `ConnectionError` (offline mode)."""
    errors: list[type[BaseException]] = [ConnectionError]
    for name in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


def hub_endpoint() -> str:
    """The Hub endpoint huggingface_hub talks to (HF_ENDPOINT or the public Hub)."""
    from huggingface_hub import constants

    return constants.ENDPOINT


def resolve_token() -> str | None:
    """HF_TOKEN, else the Hub's saved login; None when there is neither."""
    from huggingface_hub import get_token

    return get_token()
