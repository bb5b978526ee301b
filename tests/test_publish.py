"""The `publish` stage: refusals before any upload, and a versioned publish end to end over HTTP.

The end-to-end tests run the stage and `datasets.load_dataset` in subprocesses with `HF_ENDPOINT`
pointed at a local Hub-compatible server (tests/hubserver.py) backed by real git repositories,
because `huggingface_hub` reads its endpoint and offline mode at import time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
import yaml

from cards.hub import PublishConfig, PublishError, scan_release
from cards.provenance import ProvenanceError, collect, public_url
from cards.publish import main
from cards.release import main as release_main
from tests.hubserver import HubServer
from tests.test_release import argv, copy_inputs

ROOT = Path(__file__).resolve().parents[1]
SECRET = "hf_TESTSECRETtoken0123456789abcdef"


def write_params(path: Path, **publish: object) -> Path:
    cfg = {"repo_id": "org/name", "version": "1.0.0", "private": False, "enabled": True, **publish}
    path.write_text(yaml.safe_dump({"publish": cfg}), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two releases: v1 (golden inputs, teachers small+large) and v2 (other rows, teacher small only)."""
    root = tmp_path_factory.mktemp("releases")
    inp1 = copy_inputs(root / "in1")
    assert release_main(argv(inp1, root / "v1")) == 0
    inp2 = copy_inputs(root / "in2")
    traces = pl.read_parquet(inp2 / "traces.parquet")
    traces = traces.filter(pl.col("teacher") == "small").head(7)
    traces.write_parquet(inp2 / "traces.parquet")
    (inp2 / "meta" / "large.json").unlink()
    params = yaml.safe_load((inp2 / "params.yaml").read_text())
    params["publish"]["version"] = "1.1.0"
    (inp2 / "params.yaml").write_text(yaml.safe_dump(params))
    assert release_main(argv(inp2, root / "v2")) == 0
    return {"v1": root / "v1", "v2": root / "v2"}


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubServer]:
    server = HubServer(tmp_path / "hub").start()
    yield server
    server.stop()


def hub_env(hub: HubServer, home: Path, token: str | None = SECRET) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_TOKEN", "HTTP_PROXY", "HTTPS_PROXY")
        and not k.lower().endswith("_proxy")
    }
    env.update(
        HF_ENDPOINT=hub.url,
        HF_HOME=str(home / "hf_home"),
        HF_DATASETS_CACHE=str(home / "datasets_cache"),
        HF_HUB_DISABLE_TELEMETRY="1",
        NO_PROXY="127.0.0.1,localhost",
        PYTHONPATH=str(ROOT),
    )
    if token:
        env["HF_TOKEN"] = token
    return env


REMOTE_URL = "https://dvcuser:REMOTEPASSWORD@storage.example.com/team/dvc"


def make_project(root: Path, remote: str | None = REMOTE_URL) -> Path:
    """A git checkout whose committed dvc.lock built a release (upstream: verify), with a default DVC
    remote `team` at `remote` (none when None); returns its dvc.lock."""
    root.mkdir(parents=True)
    stages = {
        "verify": {"cmd": "v", "deps": [{"path": "data/traces/traces.parquet", "md5": "11"}],
                   "outs": [{"path": "data/verify/traces.parquet", "md5": "22"}]},
        "release": {"cmd": "r", "deps": [{"path": "data/verify/traces.parquet", "md5": "22"}],
                    "outs": [{"path": "release", "md5": "33.dir"}]},
        "train": {"cmd": "t", "deps": [{"path": "release", "md5": "33.dir"}],
                  "outs": [{"path": "models/student-sft", "md5": "44.dir"}]},
    }  # fmt: skip
    (root / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": stages}), encoding="utf-8")
    (root / ".dvc").mkdir()
    config = f"[core]\n    remote = team\n['remote \"team\"']\n    url = {remote}\n" if remote else ""
    (root / ".dvc" / "config").write_text(config, encoding="utf-8")
    ident = ["-c", "user.name=t", "-c", "user.email=t@t"]
    for args in (["init", "-q"], ["add", "-A"], [*ident, "commit", "-qm", "release 1.0.0"]):
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)
    return root / "dvc.lock"


def run_publish(
    env: dict[str, str], params: Path, release: Path, out: Path, lock: Path
) -> subprocess.CompletedProcess:
    """Run the stage in a subprocess for the project of `lock`; its output is also kept beside `out`."""
    cmd = [sys.executable, "-m", "cards.publish", "--params", str(params), "--release", str(release)]
    r = subprocess.run(
        [*cmd, "--out", str(out), "--lock", str(lock)],
        env=env,
        cwd=lock.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out.with_suffix(".log").write_text(r.stdout + r.stderr, encoding="utf-8")
    return r


LOAD = """
import json, sys
from datasets import load_dataset
repo, rev, config = sys.argv[1], sys.argv[2], sys.argv[3]
split = "test" if config == "heldout" else "train"
ds = load_dataset(repo, config, split=split, revision=rev)
teachers = list(ds["teacher"]) if "teacher" in ds.column_names else []
print(json.dumps({"ids": list(ds["id"]), "teachers": teachers}))
"""


API_READS = """
import json
from pathlib import Path
from huggingface_hub import HfApi, hf_hub_download
api = HfApi()
info = api.get_paths_info("org/name", ["README.md", "data"], repo_type="dataset", revision="v1.0.0")
readme = hf_hub_download("org/name", "README.md", repo_type="dataset", revision="v1.0.0")
refs = api.list_repo_refs("org/name", repo_type="dataset")
print(json.dumps({
    "user": api.whoami()["name"],
    "paths": {i.path: "file" if hasattr(i, "blob_id") else "directory" for i in info},
    "readme_v1": Path(readme).read_text(),
    "tags": sorted(t.name for t in refs.tags),
}))
"""


def load_rows(env: dict[str, str], rev: str, config: str = "default") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", LOAD, "org/name", rev, config],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def git(hub: HubServer, *args: str) -> str:
    repo = hub.repos.path("org/name")
    return subprocess.run(
        ["git", f"--git-dir={repo}", *args], capture_output=True, text=True, check=True
    ).stdout


def release_rows(release: Path, config: str) -> tuple[list[str], list[str]]:
    df = pl.read_parquet(sorted((release / "data" / config).glob("*.parquet")))
    return df["id"].to_list(), df["teacher"].to_list()


@pytest.mark.slow
def test_versions_end_to_end_over_http(hub: HubServer, releases: dict[str, Path], tmp_path: Path) -> None:
    env = hub_env(hub, tmp_path)
    lock = make_project(tmp_path / "project")
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=lock.parent, capture_output=True, text=True
    ).stdout.strip()
    p1 = write_params(tmp_path / "p1.yaml", version="1.0.0")
    p2 = write_params(tmp_path / "p2.yaml", version="1.1.0")

    r = run_publish(env, p1, releases["v1"], tmp_path / "pub1.json", lock)
    assert r.returncode == 0, r.stderr
    pub1 = json.loads((tmp_path / "pub1.json").read_text())
    assert pub1["published"] is True and pub1["tag"] == "v1.0.0" and pub1["repo_id"] == "org/name"
    assert pub1["url"] == f"{hub.url}/datasets/org/name/tree/v1.0.0"
    assert git(hub, "rev-parse", "v1.0.0").strip() == pub1["commit"]
    # The project commit and DVC remote that rebuild the version: in published.json, the Hub commit
    # and the uploaded card (the local card has the unfilled block); the remote's password nowhere.
    public = "https://storage.example.com/team/dvc"
    assert pub1["provenance"] == {"git_commit": sha, "git_remote": None, "dvc_remote": "team",
                                  "dvc_remote_url": public, "release_md5": "33.dir"}  # fmt: skip
    message = git(hub, "log", "-1", "--format=%B", "v1.0.0")
    assert f"project {sha[:12]}" in message and f"git commit {sha}" in message and public in message
    hub_card = git(hub, "show", "v1.0.0:README.md")
    assert f"git checkout {sha}\n" in hub_card and f"DVC remote `team` (`{public}`)" in hub_card
    local_card = (releases["v1"] / "README.md").read_text()
    assert "git checkout <commit>\n" in local_card and sha not in local_card
    assert hub_card.replace(sha, "") != hub_card and len(hub_card.splitlines()) > 100

    r = run_publish(env, p2, releases["v2"], tmp_path / "pub2.json", lock)
    assert r.returncode == 0, r.stderr
    pub2 = json.loads((tmp_path / "pub2.json").read_text())
    assert pub2["commit"] != pub1["commit"]
    # One commit per version, parent = the previous version; v2 dropped teacher "large".
    assert git(hub, "rev-parse", f"{pub2['commit']}^").strip() == pub1["commit"]
    files_v2 = git(hub, "ls-tree", "-r", "--name-only", "v1.1.0").split()
    assert not any(f.startswith("data/large/") for f in files_v2)
    assert "data/large/train-00000-of-00001.parquet" in git(hub, "ls-tree", "-r", "--name-only", "v1.0.0")

    # Each tag loads exactly its own rows.
    for rev, release in (("v1.0.0", releases["v1"]), ("v1.1.0", releases["v2"])):
        r = load_rows(env, rev)
        assert r.returncode == 0, r.stderr[-3000:]
        got = json.loads(r.stdout.strip().splitlines()[-1])
        ids, teachers = release_rows(release, "default")
        assert got == {"ids": ids, "teachers": teachers}
    assert len(release_rows(releases["v1"], "default")[0]) == 21
    assert len(release_rows(releases["v2"], "default")[0]) == 7
    r = load_rows(env, "v1.0.0", "heldout")
    assert r.returncode == 0 and len(json.loads(r.stdout.strip().splitlines()[-1])["ids"]) == 4
    r = load_rows(env, "v1.1.0", "large")
    assert r.returncode != 0  # the config is gone from v1.1.0

    # Re-publishing v1.0.0 with other content is refused and changes nothing.
    refs_before = git(hub, "for-each-ref")
    n_requests = len(hub.requests)
    p1_other = write_params(tmp_path / "p1o.yaml", version="1.0.0")
    r = run_publish(env, p1_other, releases["v2"], tmp_path / "pub_bad.json", lock)
    assert r.returncode == 2
    assert "tag v1.0.0 already exists on org/name with different content" in r.stderr
    assert git(hub, "for-each-ref") == refs_before
    assert not (tmp_path / "pub_bad.json").exists()
    assert "INFO" in (tmp_path / "pub_bad.log").read_text()  # the logs are kept, and grepped below
    writes = [req for req in hub.requests[n_requests:] if req[0] == "POST"]
    assert writes == []

    # Re-running v1.0.0 with the same release is a no-op.
    r = run_publish(env, p1, releases["v1"], tmp_path / "pub1b.json", lock)
    assert r.returncode == 0, r.stderr
    again = json.loads((tmp_path / "pub1b.json").read_text())
    assert again["commit"] == pub1["commit"] and again["already_published"] is True
    assert git(hub, "for-each-ref") == refs_before
    assert hub.unknown == []

    # The other reads HfApi makes of a Hub, against the same server.
    r = subprocess.run([sys.executable, "-c", API_READS], env=env, cwd=ROOT, capture_output=True, text=True,
                       timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    reads = json.loads(r.stdout.strip().splitlines()[-1])
    assert reads["user"] == "tester"
    assert reads["paths"] == {"README.md": "file", "data": "directory"}
    assert reads["readme_v1"] == hub_card
    assert reads["tags"] == ["v1.0.0", "v1.1.0"]
    assert hub.unknown == []

    # The token was sent, and is nowhere in the repository, the releases, the outputs or the logs.
    assert f"Bearer {SECRET}" in hub.auth_headers
    objects = subprocess.run(
        ["git", f"--git-dir={hub.repos.path('org/name')}", "cat-file", "--batch-all-objects", "--batch"],
        capture_output=True,
        check=True,
    ).stdout
    assert len(objects) > 1000 and SECRET.encode() not in objects
    for folder in (hub.repos.root, releases["v1"], releases["v2"], tmp_path):
        for path in folder.rglob("*"):
            if path.is_file():
                assert SECRET.encode() not in path.read_bytes(), path
                assert b"REMOTEPASSWORD" not in path.read_bytes() or path.name == "config", path
    assert len(list(tmp_path.glob("*.log"))) == 4


@pytest.mark.slow
def test_bad_input_uploads_nothing(hub: HubServer, releases: dict[str, Path], tmp_path: Path) -> None:
    env = hub_env(hub, tmp_path)
    lock = make_project(tmp_path / "project")
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (write_params(tmp_path / "a.yaml", version="1.0"), releases["v1"], "publish.version"),
        (write_params(tmp_path / "b.yaml", version="v1.0.0"), releases["v1"], "publish.version"),
        (write_params(tmp_path / "c.yaml", repo_id="not a repo"), releases["v1"], "publish.repo_id"),
        (write_params(tmp_path / "d.yaml", repo_id="org/name/extra"), releases["v1"], "publish.repo_id"),
        (write_params(tmp_path / "e.yaml"), tmp_path / "missing", "release folder not found"),
        (write_params(tmp_path / "f.yaml"), empty, "no README.md"),
    ]
    for params, release, message in cases:
        r = run_publish(env, params, release, tmp_path / "out.json", lock)
        assert r.returncode == 2, (params, r.stderr)
        assert message in r.stderr, (message, r.stderr)
    assert hub.requests == []
    assert not (tmp_path / "out.json").exists()


def test_disabled_reports_the_plan(
    releases: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "published.json"
    assert main(["--params", str(write_params(tmp_path / "p.yaml", enabled=False)), "--release",
                 str(releases["v1"]), "--out", str(out)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "Not publishing (publish.enabled is false)" in printed
    assert "data/default/train-00000-of-00001.parquet" in printed
    record = json.loads(out.read_text())
    assert record["published"] is False and record["commit"] is None and record["tag"] == "v1.0.0"
    assert {f["path"] for f in record["files"]} == {f.path for f in scan_release(releases["v1"])}


def test_config_validation() -> None:
    ok = PublishConfig(repo_id="org/name", version="1.2.3-rc.1")
    assert ok.tag == "v1.2.3-rc.1" and ok.enabled is False
    for bad in ("1.2", "01.2.3", "1.2.3+build", "v1.2.3", ""):
        with pytest.raises(ValueError, match="semantic version"):
            PublishConfig(repo_id="org/name", version=bad)
    for bad in ("name", "org/", "/name", "org/na me", "org/a--b", "-org/name"):
        with pytest.raises(ValueError, match="invalid Hub repo id"):
            PublishConfig(repo_id=bad, version="1.0.0")


def test_scan_release_rejects_hidden_files(releases: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "rel"
    shutil.copytree(releases["v1"], folder)
    (folder / ".env").write_text("x")
    with pytest.raises(PublishError, match="hidden file"):
        scan_release(folder)


def _edit_lock(lock: Path, edit) -> None:
    doc = yaml.safe_load(lock.read_text())
    edit(doc["stages"])
    lock.write_text(yaml.safe_dump(doc))


def test_provenance_names_the_commit_and_remote_and_refuses_what_cannot_be_rebuilt(tmp_path: Path) -> None:
    lock = make_project(tmp_path / "p")
    prov = collect(lock.parent, lock)
    assert prov.dvc_remote == "team" and prov.dvc_remote_url == "https://storage.example.com/team/dvc"
    assert len(prov.git_commit) == 40 and prov.release_md5 == "33.dir" and prov.git_remote is None

    # A stage downstream of the release (train) may change; the release or its inputs may not.
    _edit_lock(lock, lambda st: st["train"]["outs"][0].update(md5="55.dir"))
    assert collect(lock.parent, lock) == prov
    _edit_lock(lock, lambda st: st["verify"]["deps"][0].update(md5="99"))
    with pytest.raises(ProvenanceError, match=r"entries of \['verify'\] are not those of git commit"):
        collect(lock.parent, lock)
    subprocess.run(["git", "checkout", "dvc.lock"], cwd=lock.parent, check=True)

    (lock.parent / "params.yaml").write_text("x: 1\n")  # tracked files must be committed too
    subprocess.run(["git", "add", "params.yaml"], cwd=lock.parent, check=True)
    with pytest.raises(ProvenanceError, match=r"uncommitted changes to \['params.yaml'\]"):
        collect(lock.parent, lock)

    bare = make_project(tmp_path / "bare", remote=None)
    with pytest.raises(ProvenanceError, match="no default DVC remote"):
        collect(bare.parent, bare)
    nogit = tmp_path / "nogit"
    nogit.mkdir()
    (nogit / "dvc.lock").write_text(lock.read_text())
    with pytest.raises(ProvenanceError, match="not a git checkout"):
        collect(nogit, nogit / "dvc.lock")
    assert public_url("s3://bucket/dvc") == "s3://bucket/dvc"
    assert public_url("ssh://me:pw@host:22/srv/dvc") == "ssh://host:22/srv/dvc"


def test_publish_refuses_before_any_upload_when_the_lock_is_not_committed(
    releases: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lock = make_project(tmp_path / "p")
    _edit_lock(lock, lambda st: st["release"]["outs"][0].update(md5="77.dir"))
    monkeypatch.setenv("HF_TOKEN", SECRET)  # offline (HF_HUB_OFFLINE): a request would fail loudly
    out = tmp_path / "published.json"
    args = ["--params", str(write_params(tmp_path / "p.yaml")), "--release", str(releases["v1"])]
    assert main([*args, "--out", str(out), "--lock", str(lock)]) == 2
    err = capsys.readouterr().err
    assert "entries of ['release'] are not those of git commit" in err and "git add dvc.lock" in err
    assert not out.exists()
