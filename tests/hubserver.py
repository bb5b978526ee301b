"""A local Hub-compatible HTTP server for tests, backed by real git repositories.

It implements the write endpoints `huggingface_hub` calls to publish a dataset (create repo,
validate YAML, pre-upload, commit, tag) and the reads that `HfApi` and `datasets.load_dataset`
make (whoami, refs, revision info, tree, paths-info, resolve). Each dataset repository is a bare
git repository under `root/datasets/<org>/<name>.git`; commits are written with git plumbing and
tags are git tags, so a test can inspect what was published with the git CLI.

Every request is recorded in `HubServer.requests`; requests the server does not know are logged
at ERROR level and kept in `HubServer.unknown`, so a test can assert there were none.

A test makes the server die mid-request: `HubServer.die_on[action] = "before"` (the request is
read, nothing is done) or `"after"` (the commit or tag is made) drops the connection without an
answer, once, and stops the server (`POST .../<action>/<rev>`: preupload, commit, tag).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.hubserver_git import ORGS, USER, GitRepos, HubError

logger = logging.getLogger(__name__)


def _flag(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    # --- plumbing ---------------------------------------------------------------------------

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self, status: int, body: bytes, headers: dict[str, str] | None = None, head: bool = False
    ) -> None:
        self.send_response(status)
        hdrs = {"Content-Type": "application/json", "Content-Length": str(len(body)), **(headers or {})}
        for k, v in hdrs.items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, obj: Any, status: int = 200) -> None:
        self._send(status, json.dumps(obj).encode())

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        self.server.hub.requests.append((method, url.path))
        self.server.hub.auth_headers.append(self.headers.get("Authorization", ""))
        segments = [unquote(s) for s in url.path.split("/")[1:]]
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            if not self._route(method, segments, query):
                self.server.hub.unknown.append((method, self.path))
                logger.error("local hub: unknown request %s %s", method, self.path)
                raise HubError(404, f"unknown endpoint {method} {url.path}")
        except Exception as exc:
            if not isinstance(exc, HubError):
                logger.exception("local hub: internal error on %s %s", method, self.path)
                exc = HubError(500, f"internal error: {exc}")
            err = exc
            body = json.dumps({"error": str(err), **err.extra}).encode()
            # The request body may be unread: close the connection rather than misread it as a request.
            self.close_connection = True
            headers = {"X-Error-Message": " ".join(str(err).split())[:500], "Connection": "close"}
            if err.code:
                headers["X-Error-Code"] = err.code
            self._send(err.status, body, headers, head=method == "HEAD")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    # --- routes -----------------------------------------------------------------------------

    def _route(self, method: str, seg: list[str], query: dict[str, str]) -> bool:
        hub = self.server.hub
        if method == "GET" and seg == ["api", "whoami-v2"]:
            self._require_token()
            orgs = [{"name": o, "type": "org", "roleInOrg": "admin"} for o in ORGS]
            self._json({"type": "user", "name": USER, "fullname": USER, "orgs": orgs, "auth": {}})
            return True
        if method == "POST" and seg == ["api", "repos", "create"]:
            self._require_token()
            self._create_repo(json.loads(self._body() or b"{}"))
            return True
        if method == "POST" and seg == ["api", "validate-yaml"]:
            self._validate_yaml(json.loads(self._body() or b"{}"))
            return True
        if len(seg) >= 4 and seg[:2] == ["api", "datasets"]:
            repo_id = f"{seg[2]}/{seg[3]}"
            rest = seg[4:]
            if method == "GET" and not rest:
                self._revision_info(repo_id, "main", query)
                return True
            if method == "GET" and len(rest) == 2 and rest[0] == "revision":
                self._revision_info(repo_id, rest[1], query)
                return True
            if method == "GET" and rest == ["refs"]:
                repos = hub.repos
                self._json(
                    {
                        "branches": repos.refs(repo_id, "heads"),
                        "tags": repos.refs(repo_id, "tags"),
                        "converts": [],
                        "pullRequests": [],
                    }
                )
                return True
            if method == "GET" and len(rest) >= 2 and rest[0] == "tree":
                self._tree(repo_id, rest[1], "/".join(rest[2:]), query)
                return True
            # POST /api/datasets/<repo>/<action>/<revision>; all but paths-info need a token
            actions = {
                "paths-info": self._paths_info,
                "preupload": self._preupload,
                "commit": self._commit,
                "tag": self._tag,
            }
            if method == "POST" and len(rest) == 2 and rest[0] in actions:
                if rest[0] != "paths-info":
                    self._require_token()
                die = hub.die_on.pop(rest[0], None)
                if die == "before":
                    self._body()
                if die != "before":
                    actions[rest[0]](repo_id, rest[1], respond=die is None)
                if die is not None:
                    self.close_connection = True
                    threading.Thread(target=hub.stop, daemon=True).start()
                return True
        if method in ("GET", "HEAD") and len(seg) >= 6 and seg[0] == "datasets" and seg[3] == "resolve":
            self._resolve(f"{seg[1]}/{seg[2]}", seg[4], "/".join(seg[5:]), head=method == "HEAD")
            return True
        return False

    def _require_token(self) -> None:
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or len(auth) <= len("Bearer "):
            raise HubError(401, "Invalid credentials in Authorization header")

    def _create_repo(self, payload: dict[str, Any]) -> None:
        if payload.get("type") != "dataset":
            raise HubError(400, f"only dataset repositories are served here, got {payload.get('type')}")
        org, name = payload.get("organization") or USER, payload.get("name", "")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            raise HubError(400, f"Invalid repo name: {name}")
        repo_id = f"{org}/{name}"
        hub = self.server.hub
        if not hub.repos.create(repo_id):
            # Like the Hub, the conflict names the existing repository's URL.
            raise HubError(409, "You already created this dataset repo", url=f"{hub.url}/datasets/{repo_id}")
        hub.visibility[repo_id] = payload.get("visibility", "public")
        self._json({"url": f"{hub.url}/datasets/{repo_id}", "name": repo_id})

    def _validate_yaml(self, payload: dict[str, Any]) -> None:
        import yaml

        content = payload.get("content", "")
        match = re.match(r"^---\s*\n(.*?)\n---\s*\n", content, re.S)
        if not match:
            self._json({"errors": [], "warnings": [{"message": "empty or missing yaml metadata"}]})
            return
        try:
            data = yaml.safe_load(match.group(1))
        except yaml.YAMLError as exc:
            self._json({"errors": [{"message": f"invalid YAML: {exc}"}]}, status=400)
            return
        if not isinstance(data, dict):
            self._json({"errors": [{"message": "metadata must be a mapping"}]}, status=400)
            return
        self._json({"errors": [], "warnings": []})

    def _revision_info(self, repo_id: str, revision: str, query: dict[str, str]) -> None:
        hub = self.server.hub
        sha = hub.repos.resolve(repo_id, revision)
        files = [e for e in hub.repos.tree(repo_id, sha) if e["type"] == "file"]
        blobs = _flag(query.get("blobs"))
        siblings = [
            {"rfilename": e["path"], **({"size": e["size"], "blobId": e["oid"]} if blobs else {})}
            for e in files
        ]
        meta = hub.repos.commit_meta(repo_id, sha)
        self._json(
            {
                "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
                "id": repo_id,
                "author": repo_id.split("/")[0],
                "sha": sha,
                "private": hub.visibility.get(repo_id, "public") == "private",
                "gated": False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "createdAt": meta["date"],
                "lastModified": meta["date"],
                "siblings": siblings,
            }
        )

    def _entry(self, repo_id: str, sha: str, e: dict[str, Any], expand: bool) -> dict[str, Any]:
        out = {"type": e["type"], "oid": e["oid"], "size": e["size"], "path": e["path"]}
        if expand:
            out["lastCommit"] = self.server.hub.repos.commit_meta(repo_id, sha, e["path"])
        return out

    def _tree(self, repo_id: str, revision: str, path: str, query: dict[str, str]) -> None:
        repos = self.server.hub.repos
        sha = repos.resolve(repo_id, revision)
        entries = repos.tree(repo_id, sha)
        path = path.strip("/")
        if path and not any(e["path"] == path and e["type"] == "directory" for e in entries):
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        prefix = f"{path}/" if path else ""
        recursive, expand = _flag(query.get("recursive")), _flag(query.get("expand"))
        listed = [
            self._entry(repo_id, sha, e, expand)
            for e in entries
            if e["path"].startswith(prefix) and (recursive or "/" not in e["path"][len(prefix) :])
        ]
        self._json(listed)

    def _paths_info(self, repo_id: str, revision: str, respond: bool = True) -> None:
        repos = self.server.hub.repos
        form = parse_qs(self._body().decode())
        paths = [p.strip("/") for p in form.get("paths", [])]
        expand = _flag(form.get("expand", ["false"])[-1])
        sha = repos.resolve(repo_id, revision)
        by_path = {e["path"]: e for e in repos.tree(repo_id, sha)}
        if respond:
            self._json([self._entry(repo_id, sha, by_path[p], expand) for p in paths if p in by_path])

    def _preupload(self, repo_id: str, revision: str, respond: bool = True) -> None:
        repos = self.server.hub.repos
        payload = json.loads(self._body() or b"{}")
        sha = repos.resolve(repo_id, revision)
        by_path = {e["path"]: e for e in repos.tree(repo_id, sha) if e["type"] == "file"}
        files = []
        for f in payload.get("files", []):
            existing = by_path.get(f["path"])
            files.append(
                {
                    "path": f["path"],
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": existing["oid"] if existing else None,
                }
            )
        if respond:
            self._json({"files": files, "commitOid": sha})

    def _commit(self, repo_id: str, revision: str, respond: bool = True) -> None:
        hub = self.server.hub
        hub.repos.require(repo_id)
        if revision.startswith("refs/") or revision not in {
            r["name"] for r in hub.repos.refs(repo_id, "heads")
        }:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        header: dict[str, Any] = {}
        ops: list[tuple[str, str, bytes]] = []
        for line in self._body().splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                header = value
            elif key == "file":
                if value.get("encoding") != "base64":
                    raise HubError(400, f"unsupported encoding {value.get('encoding')}")
                ops.append(("add", value["path"], base64.b64decode(value["content"])))
            elif key == "deletedFile":
                ops.append(("delete_file", value["path"], b""))
            elif key == "deletedFolder":
                ops.append(("delete_folder", value["path"], b""))
            else:
                raise HubError(400, f"commit operation {key!r} is not supported by the local hub")
        if header.get("parentCommit"):
            head = hub.repos.resolve(repo_id, revision)
            if head != header["parentCommit"]:
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
        message = header.get("summary") or "commit"
        if header.get("description"):
            message += "\n\n" + header["description"]
        sha = hub.repos.commit(repo_id, revision, ops, message)
        if not respond:
            return
        self._json(
            {
                "success": True,
                "commitOid": sha,
                "commitUrl": f"{hub.url}/datasets/{repo_id}/commit/{sha}",
                "hookOutput": "",
                "pullRequestUrl": None,
            }
        )

    def _tag(self, repo_id: str, revision: str, respond: bool = True) -> None:
        repos = self.server.hub.repos
        payload = json.loads(self._body() or b"{}")
        sha = repos.resolve(repo_id, revision)
        repos.tag(repo_id, str(payload.get("tag", "")), sha)
        if respond:
            self._json({})

    def _resolve(self, repo_id: str, revision: str, path: str, head: bool) -> None:
        repos = self.server.hub.repos
        sha = repos.resolve(repo_id, revision)
        entry = next((e for e in repos.tree(repo_id, sha) if e["path"] == path and e["type"] == "file"), None)
        if entry is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        data = b"" if head else repos.blob(repo_id, entry["oid"])
        headers = {
            "Content-Type": "application/octet-stream",
            "ETag": f'"{entry["oid"]}"',
            "X-Repo-Commit": sha,
            "Accept-Ranges": "bytes",
            "Last-Modified": datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT"),
        }
        size = entry["size"]
        rng = self.headers.get("Range")
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", rng or "")
        if match and not head:
            start_s, end_s = match.groups()
            if start_s:
                start, end = int(start_s), min(int(end_s) if end_s else size - 1, size - 1)
            else:
                start, end = max(size - int(end_s), 0), size - 1
            if start >= size:
                raise HubError(416, "Requested range not satisfiable")
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            self._send(206, data[start : end + 1], headers)
            return
        if head:
            self.send_response(200)
            for k, v in {**headers, "Content-Length": str(size)}.items():
                self.send_header(k, v)
            self.end_headers()
            return
        self._send(200, data, headers)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    hub: HubServer


class HubServer:
    """A Hub-compatible server on 127.0.0.1 (random free port), run in a background thread."""

    def __init__(self, root: str | Path) -> None:
        self.repos = GitRepos(Path(root))
        self.requests: list[tuple[str, str]] = []
        self.auth_headers: list[str] = []
        self.unknown: list[tuple[str, str]] = []
        self.visibility: dict[str, str] = {}
        self.die_on: dict[str, str] = {}  # action -> "before" | "after": drop the connection, stop
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.hub = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="local-hub", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
