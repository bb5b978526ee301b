"""The `openai_batch` backend against a local Batch API that runs the real `vllm run-batch`.

`kill -9` right after submission: the rerun submits nothing and collects every answer. Under real
`dvc repro`: failed requests are resubmitted once (a request failing twice is a `request_error`),
and a repeated `dvc repro` submits nothing.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from builders.generation.batch_records import BatchRecords
from builders.generation.cache import GenerationCache
from tests.batchserver import FAIL_ALWAYS, FAIL_ONCE, BatchServer
from tests.dvcutil import dvc_status, keep_stages, make_dvc_repo, run_dvc
from tests.test_traces_common import build_teacher, prompt_table
from tests.test_traces_failures import marked_prompts

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
MAX_LEN = 256
TERMS = {"license": "Apache-2.0", "outputs_may_train_models": True, "commercial_use": True, "url": None}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BatchServer]:
    model = build_teacher(tmp_path_factory.mktemp("model") / "tiny-a")
    batches = BatchServer(model, tmp_path_factory.mktemp("batches"), MAX_LEN)
    yield batches
    batches.close()


def batch_teacher(server: BatchServer, **kw: Any) -> dict[str, Any]:
    return {"name": "tiny-a", "backend": "openai_batch", "model": str(server.model),
            "served_model_name": str(server.model), "base_url": server.url, "max_model_len": MAX_LEN,
            "poll_s": 0.5, "price": {"input": 0.15, "output": 0.6},
            "sampling": {"temperature": 1.0, "top_p": 1.0, "max_tokens": 16, "seed": 1}, **kw}  # fmt: skip


def traces_params(server: BatchServer, **kw: Any) -> dict[str, Any]:
    return {"base": {"seed": 5}, "license": {"teachers": {"tiny-a": TERMS}},
            "traces": {"teachers": [batch_teacher(server, **kw)], "min_new_tokens": 4,
                       "remove_truncated": False, "min_response_chars": 0}}  # fmt: skip


def submitted(cache: Path) -> int:
    """Batches recorded with their id in the cache folder."""
    return sum(bool(r.batch_id) for r in BatchRecords(cache).load())


def traces_cmd(tmp_path: Path, params: dict[str, Any], *head: str) -> list[str]:
    """The stage's command line over 24 prompts written under `tmp_path`."""
    prompt_table(24).write_parquet(tmp_path / "prompts.parquet")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return [*head, "--params", str(tmp_path / "params.yaml"), "--prompts", str(tmp_path / "prompts.parquet"),
            "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache")]  # fmt: skip


def collected_every_answer(tmp_path: Path, keys: set[str]) -> dict[str, Any]:
    """The rerun's outputs hold every prompt, the cache every key and no batch record; its run.json."""
    traces = pl.read_parquet(tmp_path / "out" / "traces.parquet")
    assert sorted(traces["id"]) == sorted(prompt_table(24)["id"]) and (traces["completion_tokens"] > 0).all()
    assert set(GenerationCache(tmp_path / "cache").load()["key"]) == keys
    assert BatchRecords(tmp_path / "cache").load() == [] and not (tmp_path / "cache" / "batches").exists()
    return json.loads((tmp_path / "out" / "run.json").read_text())["teachers"]["tiny-a"]


def test_kill_after_submission_then_rerun_collects_without_resubmitting(
    server: BatchServer, tmp_path: Path
) -> None:
    cmd = traces_cmd(tmp_path, traces_params(server, max_requests_per_file=10), sys.executable, "-m",
                     "builders.traces")  # fmt: skip
    before = len(server.created)
    first = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while submitted(tmp_path / "cache") < 3 and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL
    created = server.created[before:]
    assert [len(keys) for _, keys in created] == [10, 10, 4]  # files within max_requests_per_file
    ids = sorted(r.batch_id for r in BatchRecords(tmp_path / "cache").load())
    assert ids == sorted(bid for bid, _ in created)
    assert not (tmp_path / "out" / "traces.parquet").exists()

    second = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert len(server.created) == before + 3  # the rerun submitted nothing: it polled and collected
    run = collected_every_answer(tmp_path, {k for _, keys in created for k in keys})
    assert run["batches_submitted"] == 0 and run["requests_submitted"] == 0 and run["batches_collected"] == 3
    meta = json.loads((tmp_path / "out" / "meta" / "tiny-a.json").read_text())
    assert meta["backend"] == "openai_batch" and meta["priced_at"] == "batch"


# Killed the moment the batch exists, before its id is recorded (the record has the file id only).
KILLED_AFTER_CREATE = """
import os, signal, sys
from openai.resources.batches import Batches
create = Batches.create
def killed(self, *args, **kwargs):
    create(self, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
Batches.create = killed
from builders.traces.__main__ import main
main(sys.argv[1:])
"""


def test_killed_between_create_and_record_the_rerun_finds_the_batch(
    server: BatchServer, tmp_path: Path
) -> None:
    cmd = traces_cmd(tmp_path, traces_params(server))
    before = len(server.created)
    killed = subprocess.run([sys.executable, "-c", KILLED_AFTER_CREATE, *cmd], cwd=REPO, capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    ((_, keys),) = server.created[before:]
    (record,) = BatchRecords(tmp_path / "cache").load()
    assert record.file_id and record.batch_id is None and set(record.requests) == set(keys)

    rerun = subprocess.run([sys.executable, "-m", "builders.traces", *cmd], cwd=REPO, capture_output=True,
                           text=True, timeout=600)  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert len(server.created) == before + 1  # found among the provider's batches by its input file
    run = collected_every_answer(tmp_path, set(keys))
    assert run["batches_submitted"] == 0 and run["batches_collected"] == 1


def test_dvc_repro_resubmits_failed_requests_once(server: BatchServer, tmp_path: Path) -> None:
    prompts = marked_prompts(24, {2: FAIL_ONCE, 7: FAIL_ONCE, 11: FAIL_ALWAYS})

    def prepare(repo: Path) -> None:
        keep_stages(repo, "traces")
        dvc = yaml.safe_load((repo / "dvc.yaml").read_text())
        deps = dvc["stages"]["traces"]["deps"]
        dvc["stages"]["traces"]["deps"] = [d for d in deps if not str(d).startswith("${dirs.models}")]
        (repo / "dvc.yaml").write_text(yaml.safe_dump(dvc, sort_keys=False))
        params = yaml.safe_load((repo / "params.yaml").read_text())
        params["traces"] = traces_params(server)["traces"]
        params["license"]["teachers"] = {"tiny-a": TERMS}
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        (repo / "data" / "dedup").mkdir(parents=True)
        prompts.write_parquet(repo / "data" / "dedup" / "prompts.parquet")

    repo = make_dvc_repo(tmp_path / "repo", prepare)
    before = len(server.created)
    run_dvc(repo, "repro", "traces")
    (_, first), (_, again) = server.created[before:]
    assert len(first) == 24 and set(again) <= set(first)
    marked = {prompts["question"][k] for k in (2, 7, 11)}
    assert sorted(server.questions[k] for k in again) == sorted(marked)  # the three that failed, once more
    traces = pl.read_parquet(repo / "data" / "traces" / "traces.parquet")
    removed = pl.read_parquet(repo / "data" / "traces" / "removed.parquet")
    failing = prompts["id"][11]
    assert sorted(traces["id"]) == sorted(set(prompts["id"]) - {failing})  # FAILONCE answered the 2nd time
    assert removed["id"].to_list() == [failing] and removed["reason"].to_list() == ["request_error"]
    assert "2 submissions" in removed["detail"][0]
    assert not (repo / "data" / "traces_cache" / "batches").exists()
    run = json.loads((repo / "data" / "traces" / "run.json").read_text())["teachers"]["tiny-a"]
    assert run["requests_submitted"] == 24 and run["requests_resubmitted"] == 3

    assert dvc_status(repo) == {}
    run_dvc(repo, "repro", "traces")  # up to date: nothing submitted
    assert len(server.created) == before + 2
