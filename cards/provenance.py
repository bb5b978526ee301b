"""What rebuilds a published version: the project's git commit and the DVC remote of its data.

The release stage cannot know them (its outputs are a function of its declared inputs only), so
`publish` collects them when it uploads: the commit must hold the `dvc.lock` entries that built the
release, so that `git checkout <commit> && dvc pull` restores exactly what built it, and a default
DVC remote must be configured (where `dvc pull` fetches from). Publishing refuses otherwise.
"""

from __future__ import annotations

import logging
import re
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from core.errors import PipelineError

logger = logging.getLogger(__name__)

# The card's block that `publish` fills in (cards/templates/card.md.jinja).
BLOCK = re.compile(r"<!-- provenance -->\n.*?<!-- /provenance -->\n", re.DOTALL)


class ProvenanceError(PipelineError):
    """The version could not be rebuilt from what the publish would record; nothing was uploaded."""


@dataclass(frozen=True)
class Provenance:
    """Where a published version comes from."""

    git_commit: str
    git_remote: str | None  # the `origin` URL, credentials removed
    dvc_remote: str  # its name in .dvc/config
    dvc_remote_url: str  # credentials removed
    release_md5: str  # the release folder's hash in dvc.lock (what `dvc pull` restores)

    def dump(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> tuple[str, str]:
        """(short, long) lines for the Hub commit that publishes the version."""
        return (
            f"project {self.git_commit[:12]}",
            f"Built by git commit {self.git_commit};"
            f" data in DVC remote {self.dvc_remote} ({self.dvc_remote_url}).",
        )


def public_url(url: str) -> str:
    """`url` without user name or password (`https://user:secret@host/x` -> `https://host/x`)."""
    parts = urlsplit(url)
    if not parts.netloc or "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _git(root: Path, *args: str) -> str | None:
    try:
        r = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout if r.returncode == 0 else None


def _entries(text: str | None, source: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text or "")
    except yaml.YAMLError as exc:
        raise ProvenanceError(f"{source} is not valid YAML ({str(exc).splitlines()[0]})") from None
    stages = data.get("stages") if isinstance(data, dict) else None
    return stages if isinstance(stages, dict) else {}


def _paths(entry: dict[str, Any], kind: str) -> list[str]:
    return [str(item.get("path", "")) for item in entry.get(kind) or [] if isinstance(item, dict)]


def upstream(entries: dict[str, Any], stage: str) -> list[str]:
    """`stage` and every stage whose outs it reads, directly or not, by the lock's paths."""

    def feeds(producer: str, consumer: str) -> bool:
        outs, deps = _paths(entries[producer], "outs"), _paths(entries[consumer], "deps")
        return any(d == o or d.startswith(o + "/") or o.startswith(d + "/") for d in deps for o in outs)

    found, todo = {stage}, [stage]
    while todo:
        consumer = todo.pop()
        for producer in entries:
            if producer not in found and feeds(producer, consumer):
                found.add(producer)
                todo.append(producer)
    return sorted(found)


def dvc_remote(root: Path) -> tuple[str, str]:
    """The default DVC remote's name and URL (credentials removed); refuses when there is none."""
    from dvc.config import Config, ConfigError

    try:
        config = Config(dvc_dir=str(root / ".dvc"))
    except ConfigError as exc:
        raise ProvenanceError(f"{root / '.dvc'}: cannot read the DVC config: {exc}") from None
    name = config.get("core", {}).get("remote")
    remotes = config.get("remote", {})
    if not name or name not in remotes:
        raise ProvenanceError(
            "no default DVC remote: a published version must be rebuildable by `dvc pull`; add one "
            "(`dvc remote add -d <name> <url>`), run `dvc push`, then publish (README: share a release)"
        )
    return name, public_url(str(remotes[name].get("url", "")))


def collect(root: Path, lock: Path, stage: str = "release") -> Provenance:
    """The git commit and DVC remote that rebuild `stage`'s outputs as `lock` records them.

    Refuses when `root` is not a git checkout, when tracked files other than `lock` have uncommitted
    changes, or when the commit's `dvc.lock` differs from `lock` in the entries of `stage` and the
    stages upstream of it (commit `dvc.lock` first).
    """
    head = (_git(root, "rev-parse", "HEAD") or "").strip()
    if len(head) != 40:
        raise ProvenanceError(
            f"{root}: not a git checkout with a commit: publish records the commit that rebuilds this version"
        )
    dirty = (
        _git(root, "status", "--porcelain", "--untracked-files=no", "--", ".", f":(exclude){lock.name}") or ""
    )
    if dirty.strip():
        paths = [line[3:] for line in dirty.splitlines()]
        raise ProvenanceError(
            f"{root}: uncommitted changes to {paths[:5]}: commit them (and `dvc.lock`), `dvc push`, then "
            "publish, so that the commit rebuilds this version"
        )
    working = _entries(lock.read_text(encoding="utf-8") if lock.is_file() else None, str(lock))
    if stage not in working:
        raise ProvenanceError(f"{lock}: no entry for stage {stage}; run `dvc repro {stage}` first")
    committed = _entries(_git(root, "show", f"HEAD:{lock.name}"), f"HEAD:{lock.name}")
    changed = [s for s in upstream(working, stage) if committed.get(s) != working[s]]
    if changed:
        raise ProvenanceError(
            f"{lock}: the entries of {changed} are not those of git commit {head[:12]}; commit them so "
            f"the version can be rebuilt (`git add {lock.name} params.yaml && git commit`, `dvc push`), "
            "then publish again"
        )
    release_md5 = next(
        (str(o.get("md5")) for o in working[stage].get("outs") or [] if isinstance(o, dict)), ""
    )
    name, url = dvc_remote(root)
    origin = _git(root, "remote", "get-url", "origin")
    return Provenance(
        git_commit=head,
        git_remote=public_url(origin.strip()) if origin else None,
        dvc_remote=name,
        dvc_remote_url=url,
        release_md5=release_md5,
    )


def fill_card(card: str, prov: Provenance) -> str:
    """The card with its provenance block naming the commit and the DVC remote.

    The block's commands are the template's; their `<commit>` and repository are filled in.
    """
    match = BLOCK.search(card)
    if match is None or "```bash\n" not in match.group(0):
        raise ProvenanceError(
            "the release's README.md has no provenance block: rebuild it with `dvc repro release`"
        )
    commands = match.group(0)[match.group(0).index("```bash\n") :]
    commands = commands.replace("git checkout <commit>", f"git checkout {prov.git_commit}")
    if prov.git_remote:
        commands = commands.replace("<the project's repository>", prov.git_remote)
    where = f" of `{prov.git_remote}`" if prov.git_remote else ""
    text = (
        "<!-- provenance -->\n"
        f"- code and `dvc.lock`: git commit `{prov.git_commit}`{where}\n"
        f"- data: DVC remote `{prov.dvc_remote}` (`{prov.dvc_remote_url}`); `release/` is "
        f"`{prov.release_md5}` in that commit's `dvc.lock`\n\n"
    )
    return card[: match.start()] + text + commands + card[match.end() :]
