"""The `eval` stage end to end through vLLM (CPU build): base vs fine-tuned tiny student."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import yaml

from builders.tiny_llama import build_tiny_llama
from core.config import parse_section
from tests.data.train.support import heldout_rows, make_memo_release, tokenizer_texts
from train.config import TrainConfig
from train.eval import main
from train.sft import train_progressive

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One eval run (two vLLM engines: base and fine-tuned), shared by the tests below."""
    root = tmp_path_factory.mktemp("eval")
    release = make_memo_release(root / "release")
    student = build_tiny_llama(root / "student", tokenizer_texts())
    cfg = parse_section(
        TrainConfig,
        {
            "release": str(release),
            "base_model": str(student),
            "phases": [{"teacher": "memo", "epochs": 40, "learning_rate": 1e-2}],
            "max_length": 256,
            "per_device_batch_size": 1,
            "lr_scheduler": "constant",
        },
        section="train",
    )
    train_progressive(cfg, seed=0, out_dir=root / "sft")
    params = {
        "base": {"seed": 0},
        "eval": {
            "dataset": str(release),
            "models": {"base": str(student), "sft": str(root / "sft")},
            "max_new_tokens": 8,
            "max_model_len": 256,
        },
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    assert main(["--params", str(root / "params.yaml"), "--out", str(root / "out")]) == 0
    return root / "out"


def test_metrics_per_submix_and_overall_match_predictions(evaluated: Path) -> None:
    metrics = json.loads((evaluated / "metrics.json").read_text())
    preds = pl.read_parquet(evaluated / "predictions.parquet")
    assert metrics["n"] == len(heldout_rows()) == 6 and list(metrics["models"]) == ["base", "sft"]
    assert preds.height == 12 and set(preds["model"]) == {"base", "sft"}
    for label, res in metrics["models"].items():
        mine = preds.filter(pl.col("model") == label)
        assert res["overall"]["correct"] == mine["correct"].sum()
        assert set(res["by_submix"]) == {"cot", "flan2021", "t0"}
        for submix, cell in res["by_submix"].items():
            assert cell["correct"] == mine.filter(pl.col("submix") == submix)["correct"].sum()
    methods = dict(preds.filter(pl.col("model") == "base").select("id", "method").iter_rows())
    assert methods["h001"] == "option" and methods["h002"] == "exact_match"


def test_fine_tuned_student_beats_the_base_through_vllm(evaluated: Path) -> None:
    metrics = json.loads((evaluated / "metrics.json").read_text())
    base = metrics["models"]["base"]["overall"]["accuracy"]
    sft = metrics["models"]["sft"]["overall"]["accuracy"]
    # it was trained on these very answers: generation, chat format and scoring must line up
    assert sft >= 5 / 6 > base, (base, sft)


def test_markdown_table_lists_every_submix(evaluated: Path) -> None:
    lines = (evaluated / "table.md").read_text().splitlines()
    assert lines[0].startswith("| submix | n | base | sft |")
    assert [ln.split("|")[1].strip() for ln in lines[2:]] == ["cot", "flan2021", "t0", "**overall**"]
