"""The `verify` stage under real `dvc repro` with a judge: `kill -9` while judging, then a rerun that
re-judges nothing already judged (requests counted at the judge server)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
import yaml

from builders.generation.cache import GenerationCache
from tests.dvcutil import BIN, dvc_env, dvc_status, keep_stages, make_dvc_repo, run_dvc
from tests.test_verify import FakeJudge, judge_config, trace_table

pytestmark = pytest.mark.slow

N_OPEN = 40
_ROW = re.compile(r"row (\d+)\b")


def open_cases() -> list[tuple[str, str, str, bool, dict[str, str]]]:
    """`N_OPEN` summaries (open answers, one teacher) and one closed question the rule checks."""
    cases = []
    for k in range(N_OPEN):
        reference = f"After a week of rain the valley's river rose (row {k})."
        answer = reference if k % 3 == 0 else f"The river rose after rain, as row {k} says."
        question = f"Summarize row {k}: the river rose after a week of rain in the valley."
        cases.append(("niv2", question, reference, False, {"ta": answer}))
    cases.append(("t0", "Is ice colder than steam? Answer yes or no.", "yes", False, {"ta": "Answer: yes"}))
    return cases


def _verify_only(url: str) -> Callable[[Path], None]:
    def prepare(repo: Path) -> None:
        keep_stages(repo, "verify")
        params = yaml.safe_load((repo / "params.yaml").read_text())
        params["verify"] = {**params["verify"], "drop_wrong": True, "shard_size": 2, "flush_s": 60.0,
                            "judge": judge_config(url)}  # fmt: skip
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        (repo / "data" / "traces").mkdir(parents=True)
        trace_table(open_cases()).write_parquet(repo / "data" / "traces" / "traces.parquet")

    return prepare


def rows_asked(questions: list[str]) -> list[int]:
    """The row numbers of the judging requests a server received."""
    return [int(_ROW.search(q)[1]) for q in questions]  # type: ignore[index]


def test_kill_during_judging_then_rerun_judges_only_the_rest(tmp_path: Path) -> None:
    server = FakeJudge(delay_s=0.15)
    try:
        repo = make_dvc_repo(tmp_path / "repo", prepare=_verify_only(server.url))
        cache = GenerationCache(repo / "data" / "verify_cache")
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        cmd = [str(BIN / "dvc"), "repro", "verify"]
        first = subprocess.Popen(cmd, cwd=repo, env=dvc_env(repo), start_new_session=True, **quiet)
        deadline = time.time() + 180
        while len(cache.shards()) < 3 and first.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert first.poll() is None, "the first run ended before it could be killed"
        os.killpg(first.pid, signal.SIGKILL)  # dvc and the stage it runs
        first.wait()
        judged = cache.load()
        assert 0 < judged.height < N_OPEN and judged["key"].n_unique() == judged.height
        assert not (repo / "data" / "verify" / "traces.parquet").exists()
        traces = trace_table(open_cases()).filter(pl.col("submix") == "niv2")
        row_of = {
            f"{i}:ta": rows_asked([q])[0] for i, q in zip(traces["id"], traces["question"], strict=True)
        }
        cached = {row_of[i] for i in judged["id"]}
        lost = len(server.answered) - len(cached)  # answered, not yet in a shard when killed
        assert 0 <= lost <= 2 + 1  # at most a shard (shard_size 2) and the request in flight
        server.received.clear()

        run_dvc(repo, "repro", "verify")
        again = rows_asked(server.received)
        # nothing judged before the kill (every cached verdict) is asked again; the rest exactly once
        assert len(again) == len(set(again)) == N_OPEN - len(cached)
        assert set(again).isdisjoint(cached) and set(again) | cached == set(range(N_OPEN))
        print(f"killed with {len(cached)} of {N_OPEN} verdicts cached ({lost} answered but lost); "
              f"the rerun asked the judge {len(again)} times")  # fmt: skip
        assert dvc_status(repo) == {}

        stats = json.loads((repo / "data" / "verify" / "stats.json").read_text())
        checks = stats["answer_checks"]
        assert checks["judged"]["rows"] == N_OPEN and checks["judged"]["request_error"] == 0
        assert checks["judged"]["correct"] == len([k for k in range(N_OPEN) if k % 3 == 0])
        run = json.loads((repo / "data" / "verify" / "run.json").read_text())["judge"]
        assert run["cached_before_run"] == judged.height and run["sent"] == N_OPEN - judged.height
        verified = pl.read_parquet(repo / "data" / "verify" / "traces.parquet")
        removed = pl.read_parquet(repo / "data" / "verify" / "removed.parquet")
        assert set(verified["answer_check"]) == {"correct"} and set(removed["reason"]) == {"wrong_answer"}
        assert stats["funnel"] == {"stage": "verify", "rows_in": N_OPEN + 1, "rows_out": verified.height,
                                   "removed": {"wrong_answer": removed.height}}  # fmt: skip

        server.received.clear()
        run_dvc(repo, "repro", "verify")  # up to date: nothing runs, nothing is asked
        assert server.received == []
    finally:
        server.close()
