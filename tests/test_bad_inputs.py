"""Every bad input is one line naming the file or key: evaluation sets, models that do not exist."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from builders.prompts.__main__ import main as prompts_main
from builders.traces.__main__ import main as traces_main
from core.models import is_path_like
from dedup.dedup import main as dedup_main
from tests.failing import stage_fails
from tests.test_dedup import golden
from tests.test_prompts import make_cfg
from tests.test_traces_common import prompt_table
from train.eval import main as eval_main

ROOT = Path(__file__).resolve().parents[1]

GOOD = '{"question": "what is the capital of france and why is it there"}\n'
BAD_EVAL_FILES = {  # name -> (bytes, what the one line says after the file's path)
    "broken.jsonl": (GOOD.encode() + b'{"question": "half a line\n',
                     "line 2 of eval set 'e' is not valid JSON: Unterminated string starting at"),
    "empty.jsonl": (b"", "eval set 'e' has no items"),
    "blank.jsonl": (b"\n\n", "eval set 'e' has no items"),
    "nulls.jsonl": (b'{"question": null}\n{"question": ""}\n',
                    "eval set 'e' has no text items in 'question'"),
    "array.jsonl": (GOOD.encode() + b'["a list"]\n', "line 2 of eval set 'e' is list, not an object"),
    "number.jsonl": (GOOD.encode() + b'{"question": 42}\n',
                     "line 2 of eval set 'e': 'question' is int, not a string ('42')"),
    "nested.jsonl": (b'{"question": {"text": "x"}}\n',
                     "line 1 of eval set 'e': 'question' is dict, not a string"),
    "latin1.jsonl": ('{"question": "café au lait"}\n'.encode("latin-1"),
                     "eval set 'e' is not UTF-8 text (byte 17)"),
    "bad.json": (b'{"examples": [{"question": "a"},]}', "not valid JSON: Expecting value: line 1 column 33"),
    "notlist.json": (b'{"examples": {"question": "a"}}', "expected a list of records (objects)"),
    "strings.json": (b'{"examples": ["a", "b"]}', "expected a list of records (objects)"),
    "latin1.json": ('{"examples": [{"question": "café"}]}'.encode("latin-1"),
                    "eval set 'e' is not UTF-8 text (byte 31)"),
    "other.csv": (b"question\na\n", "unsupported eval file type '.csv'"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(BAD_EVAL_FILES))
def test_a_bad_eval_file_is_one_line_naming_it(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, expected = BAD_EVAL_FILES[name]
    path = tmp_path / name
    path.write_bytes(data)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    spec = {"name": "e", "path": str(path), "text_column": "question"}
    if name.endswith(".json"):
        spec["json_field"] = "examples"
    params["dedup"]["eval_sets"] = [spec]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path / "out"
    golden().write_parquet(tmp_path / "prompts.parquet")
    argv = [
        "--params",
        str(tmp_path / "params.yaml"),
        "--prompts",
        str(tmp_path / "prompts.parquet"),
        "--out",
        str(out),
    ]
    line = stage_fails(dedup_main, argv, capsys, r"^dedup: ")
    assert line.startswith(f"dedup: {path}: {expected}"), line
    assert not out.exists()


def test_a_good_jsonl_eval_set_skips_null_and_empty_items(tmp_path: Path) -> None:
    from dedup.config import EvalSetSpec
    from dedup.decontam import load_eval_texts

    path = tmp_path / "e.jsonl"
    rows = [
        {"question": "a real item"},
        {"question": None},
        {"question": "  "},
        {"other": 1},
        {"question": "b"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert load_eval_texts(EvalSetSpec(name="e", path=str(path), text_column="question")) == [
        "a real item",
        "b",
    ]


# --- models that do not exist: named before any work ----------------------------------------------


def stage_params(tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    edit(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("{tmp}/no-such-model", "model folder {tmp}/no-such-model not found"),
        ("{tmp}/not-a-model", "{tmp}/not-a-model is a folder without config.json, not a model"),
        ("nobody/no-such-model", "nobody/no-such-model is no local folder and not in the Hub cache"),
    ],
)
def test_a_teacher_model_that_does_not_exist_stops_traces_before_any_work(
    model: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "not-a-model").mkdir()
    model = model.format(tmp=tmp_path)

    def edit(p: dict[str, Any]) -> None:
        p["traces"]["teachers"][0]["model"] = model

    params = stage_params(tmp_path, edit)
    prompt_table(3).write_parquet(tmp_path / "prompts.parquet")
    argv = ["--params", str(params), "--prompts", str(tmp_path / "prompts.parquet"), "--out",
            str(tmp_path / "out"), "--cache", str(tmp_path / "cache")]  # fmt: skip
    line = stage_fails(traces_main, argv, capsys, r"^traces: ")
    assert line == f"traces: traces.teachers[0].model (tiny-a): {expected.format(tmp=tmp_path)}" + (
        " (HF_HUB_OFFLINE is set)" if model.startswith("nobody") else ""
    )
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_an_eval_model_that_does_not_exist_stops_eval_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def edit(p: dict[str, Any]) -> None:
        p["eval"]["models"] = {"base": str(tmp_path / "nothing"), "sft": str(tmp_path / "nothing")}
        p["eval"]["dataset"] = str(tmp_path / "no-release")  # never read: the models are checked first

    params = stage_params(tmp_path, edit)
    line = stage_fails(
        eval_main, ["--params", str(params), "--out", str(tmp_path / "out")], capsys, r"^eval: "
    )
    assert line == f"eval: eval.models.base: model folder {tmp_path / 'nothing'} not found"
    assert not (tmp_path / "out").exists()


def test_hub_ids_and_paths_are_told_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    assert is_path_like("models/tiny-x")  # a missing folder under models/, not a Hub user `models`
    assert is_path_like("./x") and is_path_like("/x") and is_path_like("a/b/c")
    assert not is_path_like("Qwen/Qwen2.5-7B-Instruct") and not is_path_like("gpt2")


# --- control characters in prompts ------------------------------------------------------------------


def test_nul_and_control_characters_are_removed_rows_with_a_reason(tmp_path: Path) -> None:
    questions = ["a fine question?", "\x00" * 50, "bell \x07 inside", "tab\tand\nnewline are text", "ok?"]
    table = pa.table(
        {
            "inputs": pa.array(questions),
            "targets": pa.array(["a", "b", "c", "d", "escape \x1b[31m in the target"]),
            "task_source": pa.array(["CoT"] * 5),
            "task_name": pa.array(["cot_gsm8k"] * 5),
            "template_type": pa.array(["zs_noopt"] * 5),
        }
    )
    source = tmp_path / "s" / "cot_submix_original" / "data"
    source.mkdir(parents=True)
    pq.write_table(table, source / "z.parquet")
    cfg = make_cfg(tmp_path / "s", tmp_path, recipe_budgets={"cot": 10})
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"base": {"seed": 1}, "prompts": cfg.model_dump(mode="json")}))
    out = tmp_path / "out"
    assert prompts_main(["--params", str(params), "--out", str(out)]) == 0
    prompts = pl.read_parquet(out / "prompts.parquet")
    assert sorted(prompts["question"]) == ["a fine question?", "tab\tand\nnewline are text"]
    removed = pl.read_parquet(out / "removed.parquet").filter(pl.col("reason") == "control_characters")
    assert sorted(removed["detail"]) == [
        "cot_submix_original/data/z.parquet: column inputs",
        "cot_submix_original/data/z.parquet: column inputs",
        "cot_submix_original/data/z.parquet: column targets",
    ]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["funnel"]["removed"]["control_characters"] == 3


# --- outputs do not depend on the environment ---------------------------------------------------------

_BUILD = """
import sys
from pathlib import Path
from transformers import AutoModelForCausalLM, AutoTokenizer
from builders.tiny_models import main
from core.models import save_tokenizer

out = Path(sys.argv[1])
assert main(["--params", "params.yaml", "--sample", "sample/flan", "--out", str(out / "models")]) == 0
student = out / "models" / "tiny-student"
tokenizer = AutoTokenizer.from_pretrained(student)  # as train/sft.py loads and saves the student
AutoModelForCausalLM.from_pretrained(student).save_pretrained(out / "student")
save_tokenizer(tokenizer, out / "student")
tokenizer.save_pretrained(out / "raw")  # transformers' own save, for comparison
"""


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.mark.slow
def test_models_are_the_same_bytes_with_and_without_hf_hub_offline(tmp_path: Path) -> None:
    built = {}
    for offline in (True, False):
        env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
        if offline:
            env["HF_HUB_OFFLINE"] = "1"
        out = tmp_path / ("offline" if offline else "online")
        r = subprocess.run([sys.executable, "-c", _BUILD, str(out)], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=600)  # fmt: skip
        assert r.returncode == 0, r.stderr[-3000:]
        built[offline] = out
    for part in ("models", "student"):
        assert tree_bytes(built[True] / part) == tree_bytes(built[False] / part), part
    assert len(tree_bytes(built[True] / "models")) == 3 * 6
    # transformers' own save records how the tokenizer was loaded: the difference save_tokenizer removes
    raw = [json.loads((built[o] / "raw" / "tokenizer_config.json").read_text()) for o in (True, False)]
    assert raw[0]["local_files_only"] is True and raw[1]["local_files_only"] is False
    assert "local_files_only" not in json.loads(
        (built[True] / "student" / "tokenizer_config.json").read_text()
    )
