"""The release's answer checks (the card's accuracy tables, the judge) and Orca 2's prompt erasing."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
import yaml
from datasets import load_dataset

from cards.release import main
from core.contracts import JudgeCounts, JudgeRecord
from tests.test_release import GOLDEN, argv, copy_inputs

GENERIC = "You are a careful assistant."


def _params(inp: Path, **release: object) -> None:
    params = yaml.safe_load((inp / "params.yaml").read_text())
    params["release"].update(release)
    (inp / "params.yaml").write_text(yaml.safe_dump(params))


def test_card_shows_accuracy_per_teacher_submix_and_kind(tmp_path: Path) -> None:
    inp = copy_inputs(tmp_path / "inputs")
    assert main(argv(inp, tmp_path / "release")) == 0
    text = (tmp_path / "release" / "README.md").read_text(encoding="utf-8")
    # golden: the large teacher is wrong on cot; niv2 references are sentences (open, no judge)
    assert "| large | cot | 3 | 0 | 3 | 0 | 0.0% |" in text
    assert "| small | t0 | 3 | 3 | 0 | 0 | 100.0% |" in text
    assert "| large | niv2 | 3 | 0 | 0 | 3 | n/a |" in text
    assert "| large | closed | 6 | 3 | 3 | 0 | 50.0% |" in text
    assert "| small | open | 3 | 0 | 0 | 3 | n/a |" in text
    assert "Of 21 traces,\n15 could be checked (12 correct,\n3 wrong: 80.0% correct) and\n6 could not" in text
    assert "No judge model was configured" in text
    assert "| verify | 21 | 21 | 0 | none |" in text  # the step's funnel row
    assert "kept, flagged `wrong`" in text


def test_card_names_the_judge(tmp_path: Path) -> None:
    inp = copy_inputs(tmp_path / "inputs")
    stats = json.loads((inp / "verify" / "stats.json").read_text())
    judge = JudgeRecord(
        model="org/judge-7b",
        revision="f" * 40,
        requested_revision="v1",
        backend="openai",
        vllm_version=None,
        sampling={"temperature": 0.0},
        max_model_len=4096,
        prompt_file="builders/verify/judge_prompt.txt",
        prompt_sha256="ab" * 32,
    )
    judged = JudgeCounts(rows=6, correct=2, wrong=3, unparseable=1, prompt_too_long=0, request_error=0)
    stats["answer_checks"] |= {"judge": judge.dump(), "judged": judged.dump(), "drop_wrong": True}
    (inp / "verify" / "stats.json").write_text(json.dumps(stats))
    assert main(argv(inp, tmp_path / "release")) == 0
    text = (tmp_path / "release" / "README.md").read_text(encoding="utf-8")
    assert f"judged by `org/judge-7b` (revision `{'f' * 40}`" in text
    assert f"(sha256 `{'ab' * 32}`)" in text
    assert "6 rows judged, 2 correct, 3 wrong" in text and "1 replies without a verdict" in text
    assert "were removed (`wrong_answer`)" in text


def test_answer_checks_must_cover_the_funnel(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inp = copy_inputs(tmp_path / "inputs")
    stats = json.loads((inp / "verify" / "stats.json").read_text())
    stats["answer_checks"]["counts"][0]["correct"] += 1
    (inp / "verify" / "stats.json").write_text(json.dumps(stats))
    assert main(argv(inp, tmp_path / "release")) == 2
    err = capsys.readouterr().err
    assert "verify/stats.json: answer_checks.counts add up to 22 rows, the funnel has rows_in 21" in err
    assert not (tmp_path / "release").exists()


def test_unverified_traces_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inp = copy_inputs(tmp_path / "inputs")
    pl.read_parquet(inp / "traces.parquet").drop("answer_check").write_parquet(inp / "traces.parquet")
    assert main(argv(inp, tmp_path / "release")) == 2
    assert "missing columns ['answer_check']" in capsys.readouterr().err


def test_erasing_system_prompts(tmp_path: Path) -> None:
    inp = copy_inputs(tmp_path / "inputs")
    _params(inp, erase_system_prompt=True, generic_system_prompt=GENERIC)
    out = tmp_path / "release"
    assert main(argv(inp, out)) == 0
    traces = pl.read_parquet(GOLDEN / "traces.parquet")
    cache = str(tmp_path / "cache")
    for config, rows in [("default", traces), ("small", traces.filter(pl.col("teacher") == "small"))]:
        ds = load_dataset(str(out), config, split="train", cache_dir=cache)
        names = ds.column_names
        assert names.index("original_system_prompt") == names.index("system_prompt") + 1
        assert set(ds["system_prompt"]) == {GENERIC}
        assert ds["original_system_prompt"] == rows["system_prompt"].to_list()
        assert ds["answer_check"] == rows["answer_check"].to_list()
        assert ds.features["original_system_prompt"].dtype == "string"
    heldout = load_dataset(str(out), "heldout", split="test", cache_dir=cache)
    assert "original_system_prompt" not in heldout.column_names  # evaluation prompts keep theirs
    card = (out / "README.md").read_text(encoding="utf-8")
    assert f'generic\nmessage "{GENERIC}"' in card and "`original_system_prompt`" in card
    shard = pq.read_schema(out / "data" / "default" / "train-00000-of-00001.parquet")
    expected = traces.columns
    expected.insert(expected.index("system_prompt") + 1, "original_system_prompt")
    assert shard.names == expected
    features = {i["config_name"]: i["features"] for i in yaml.safe_load(card.split("---")[1])["dataset_info"]}
    assert {"name": "original_system_prompt", "dtype": "string"} in features["default"]


def test_erasing_is_off_by_default(tmp_path: Path) -> None:
    inp = copy_inputs(tmp_path / "inputs")
    out = tmp_path / "release"
    assert main(argv(inp, out)) == 0
    schema = pq.read_schema(out / "data" / "default" / "train-00000-of-00001.parquet")
    assert "original_system_prompt" not in schema.names
    assert schema.names == pq.read_schema(GOLDEN / "traces.parquet").names
