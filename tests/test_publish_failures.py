"""Publishing that is asked for happens or fails with one line; a rerun finishes what a failure left.

The stage runs in a subprocess against the local Hub (tests/hubserver.py), which a test makes
unreachable (a closed port) or makes die in the middle of a commit.
"""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest

from cards.publish import main
from tests.hubserver import HubServer
from tests.test_publish import (  # noqa: F401  (the `releases` fixture)
    git,
    hub_env,
    make_project,
    releases,
    run_publish,
    write_params,
)


def one_line(r: subprocess.CompletedProcess) -> str:
    """The stage's one error line (INFO logs aside): exit code 2, no traceback."""
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("publish:")]
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_enabled_without_a_token_fails_with_one_line(
    releases: dict[str, Path],  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_home"))
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(tmp_path / "empty_home" / "token"))
    out = tmp_path / "published.json"
    argv = ["--params", str(write_params(tmp_path / "p.yaml")), "--release", str(releases["v1"])]
    capsys.readouterr()
    assert main([*argv, "--out", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        "publish: publish.enabled is true but there is no Hub token: set HF_TOKEN (or log in with "
        "`hf auth login`) to publish org/name v1.0.0, or set publish.enabled: false"
    ]
    assert not out.exists()  # nothing recorded: DVC runs the stage again once a token is set


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.slow
def test_a_hub_that_is_down_is_one_line(releases: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    hub = HubServer(tmp_path / "hub")  # never started: its URL is a closed port
    env = hub_env(hub, tmp_path)
    url = closed_port()
    env["HF_ENDPOINT"] = url
    lock = make_project(tmp_path / "project")
    r = run_publish(env, write_params(tmp_path / "p.yaml"), releases["v1"], tmp_path / "pub.json", lock)
    line = one_line(r)
    assert line.startswith(f"publish: cannot reach the Hub at {url} (ConnectError: ")
    assert line.endswith("v1.0.0 is not published: run again to finish (nothing is uploaded twice)")
    assert not (tmp_path / "pub.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize("when", ["before", "after"])
def test_a_hub_dying_mid_commit_is_one_line_and_the_rerun_publishes(
    when: str,
    releases: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    """The connection drops during the commit request: before the Hub made the commit, or after
    (the commit landed, its answer and the tag did not). The rerun publishes exactly one commit."""
    lock = make_project(tmp_path / "project")
    params = write_params(tmp_path / "p.yaml")
    hub = HubServer(tmp_path / "hub").start()
    hub.die_on["commit"] = when
    r = run_publish(hub_env(hub, tmp_path), params, releases["v1"], tmp_path / "pub.json", lock)
    line = one_line(r)
    assert line.startswith(f"publish: cannot reach the Hub at {hub.url} (")
    assert "v1.0.0 is not published: run again to finish" in line
    assert not (tmp_path / "pub.json").exists()
    commits = git(hub, "rev-list", "--all").split()
    assert len(commits) == (2 if when == "after" else 1)  # the repository's first commit, and ours
    assert git(hub, "tag").split() == []
    hub.stop()

    again = HubServer(tmp_path / "hub").start()  # the Hub is back, with what it had
    try:
        r = run_publish(hub_env(again, tmp_path), params, releases["v1"], tmp_path / "pub.json", lock)
        assert r.returncode == 0, r.stderr
        pub = json.loads((tmp_path / "pub.json").read_text())
        assert pub["published"] is True and pub["tag"] == "v1.0.0"
        assert git(again, "rev-parse", "v1.0.0").strip() == pub["commit"]
        assert len(git(again, "rev-list", "--all").split()) == 2  # one release commit, never two
        files = set(git(again, "ls-tree", "-r", "--name-only", "v1.0.0").split())
        assert "data/default/train-00000-of-00001.parquet" in files and "README.md" in files
    finally:
        again.stop()
