"""Storage of the local test hub: dataset repositories as bare git repositories.

Commits are written with git plumbing (hash-object, a temporary index, write-tree, commit-tree,
update-ref) and tags are git tags, so a test can inspect what was published with the git CLI.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from pathlib import Path
from typing import Any

USER = "tester"
ORGS = ("org",)
GITATTRIBUTES = b"# created by the local test hub\n*.parquet -text\n"


class HubError(Exception):
    """An HTTP error with the Hub's X-Error-Code header."""

    def __init__(self, status: int, message: str, code: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.extra = extra


def _git(repo: Path, *args: str, input: bytes | None = None, env: dict[str, str] | None = None) -> str:
    full_env = {
        **os.environ,
        "GIT_AUTHOR_NAME": USER,
        "GIT_AUTHOR_EMAIL": f"{USER}@localhost",
        "GIT_COMMITTER_NAME": USER,
        "GIT_COMMITTER_EMAIL": f"{USER}@localhost",
        **(env or {}),
    }
    out = subprocess.run(
        ["git", f"--git-dir={repo}", *args], input=input, capture_output=True, check=False, env=full_env
    )
    if out.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {out.stderr.decode(errors='replace')}")
    return out.stdout.decode()


def _remove_from_index(repo: Path, paths: list[str], env: dict[str, str]) -> None:
    # Mode 0 removes an entry; unlike --force-remove this works without a work tree (bare repository).
    lines = "".join(f"0 {'0' * 40}\t{p}\n" for p in paths)
    _git(repo, "update-index", "--index-info", input=lines.encode(), env=env)


class GitRepos:
    """Dataset repositories as bare git repositories, one lock per repository."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def path(self, repo_id: str) -> Path:
        return self.root / "datasets" / f"{repo_id}.git"

    def lock(self, repo_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(repo_id, threading.Lock())

    def exists(self, repo_id: str) -> bool:
        return self.path(repo_id).is_dir()

    def create(self, repo_id: str) -> bool:
        """Create the repository with an initial commit holding `.gitattributes`; False if it exists."""
        with self.lock(repo_id):
            repo = self.path(repo_id)
            if repo.exists():
                return False
            repo.mkdir(parents=True)
            _git(repo, "init", "--bare", "-q", "-b", "main")
            self._commit(repo, None, [("add", ".gitattributes", GITATTRIBUTES)], "initial commit")
            return True

    def resolve(self, repo_id: str, revision: str) -> str:
        """The commit sha a branch, tag or sha names; raises 404 RevisionNotFound."""
        repo = self.require(repo_id)
        if not re.fullmatch(r"[A-Za-z0-9._/-]+", revision):
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        for ref in (f"refs/heads/{revision}", f"refs/tags/{revision}", revision):
            try:
                return _git(repo, "rev-parse", "--verify", "-q", f"{ref}^{{commit}}").strip()
            except RuntimeError:
                continue
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def require(self, repo_id: str) -> Path:
        repo = self.path(repo_id)
        if not repo.is_dir():
            raise HubError(404, f"Repository not found: {repo_id}", "RepoNotFound")
        return repo

    def tree(self, repo_id: str, sha: str) -> list[dict[str, Any]]:
        """Every entry (blobs and trees) of a commit, recursively: path, type, oid, size."""
        repo = self.require(repo_id)
        entries = []
        for line in _git(repo, "ls-tree", "-r", "-t", "-l", "-z", sha).split("\0"):
            if not line:
                continue
            meta, path = line.split("\t", 1)
            _mode, kind, oid, size = meta.split()
            entries.append(
                {"path": path, "type": "file" if kind == "blob" else "directory", "oid": oid, "size": size}
            )
        for e in entries:
            e["size"] = int(e["size"]) if e["type"] == "file" else 0
        return entries

    def blob(self, repo_id: str, oid: str) -> bytes:
        repo = self.require(repo_id)
        out = subprocess.run(
            ["git", f"--git-dir={repo}", "cat-file", "blob", oid], capture_output=True, check=True
        )
        return out.stdout

    def commit_meta(self, repo_id: str, sha: str, path: str | None = None) -> dict[str, str]:
        """id, title and date of `sha`, or of the last commit before it that touched `path`."""
        repo = self.require(repo_id)
        args = ["log", "-1", "--date=format-local:%Y-%m-%dT%H:%M:%S.000Z", "--format=%H%x00%s%x00%cd", sha]
        if path:
            args += ["--", path]
        cid, title, date = _git(repo, *args, env={"TZ": "UTC"}).strip().split("\0")
        return {"id": cid, "title": title, "date": date}

    def commit(self, repo_id: str, branch: str, ops: list[tuple[str, str, bytes]], message: str) -> str:
        with self.lock(repo_id):
            repo = self.require(repo_id)
            try:
                parent = _git(repo, "rev-parse", "--verify", "-q", f"refs/heads/{branch}").strip()
            except RuntimeError:
                raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound") from None
            return self._commit(repo, parent, ops, message, branch=branch)

    def _commit(
        self,
        repo: Path,
        parent: str | None,
        ops: list[tuple[str, str, bytes]],
        message: str,
        branch: str = "main",
    ) -> str:
        index = repo / f"index.{threading.get_ident()}"
        env = {"GIT_INDEX_FILE": str(index)}
        try:
            if parent:
                _git(repo, "read-tree", parent, env=env)
            else:
                _git(repo, "read-tree", "--empty", env=env)
            for kind, path, data in ops:
                if kind == "add":
                    oid = _git(repo, "hash-object", "-w", "--stdin", input=data).strip()
                    _git(repo, "update-index", "--add", "--cacheinfo", f"100644,{oid},{path}", env=env)
                elif kind == "delete_file":
                    listed = _git(repo, "ls-files", "-z", "--", path, env=env).split("\0")
                    if path not in listed:
                        raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                    _remove_from_index(repo, [path], env)
                elif kind == "delete_folder":
                    prefix = path.rstrip("/") + "/"
                    names = [
                        n for n in _git(repo, "ls-files", "-z", env=env).split("\0") if n.startswith(prefix)
                    ]
                    if not names:
                        raise HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                    _remove_from_index(repo, names, env)
            tree = _git(repo, "write-tree", env=env).strip()
            args = ["commit-tree", tree, "-m", message]
            if parent:
                args += ["-p", parent]
            sha = _git(repo, *args).strip()
            _git(repo, "update-ref", f"refs/heads/{branch}", sha, parent or "")
            return sha
        finally:
            index.unlink(missing_ok=True)

    def tag(self, repo_id: str, tag: str, sha: str) -> None:
        with self.lock(repo_id):
            repo = self.require(repo_id)
            if not re.fullmatch(r"[A-Za-z0-9._-]+", tag):
                raise HubError(400, f"Invalid tag name: {tag}")
            try:
                # An empty old value makes git refuse when the tag already exists.
                _git(repo, "update-ref", f"refs/tags/{tag}", sha, "")
            except RuntimeError:
                raise HubError(409, f"Tag {tag} already exists") from None

    def refs(self, repo_id: str, kind: str) -> list[dict[str, str]]:
        repo = self.require(repo_id)
        out = _git(repo, "for-each-ref", "--format=%(refname)%00%(objectname)", f"refs/{kind}")
        refs = []
        for line in out.splitlines():
            ref, sha = line.split("\0")
            name = ref.removeprefix(f"refs/{kind}/")
            refs.append({"name": name, "ref": ref, "targetCommit": sha})
        return refs
