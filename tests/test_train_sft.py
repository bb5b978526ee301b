"""The `train` stage end to end on a tiny release folder (read with load_dataset) and tiny student."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from builders.tiny_llama import build_tiny_llama
from core.config import parse_section
from tests.data.train.support import make_release, tokenizer_texts, trace_rows
from train.config import TrainConfig
from train.format import format_rows
from train.packing import PackedCollator, PackedDataset, pack_examples
from train.sft import TrainError, train_progressive
from train.train import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("train")
    return make_release(root / "release"), build_tiny_llama(root / "student", tokenizer_texts())


def _cfg(release: Path, student: Path, **over: object) -> TrainConfig:
    data = {
        "release": str(release),
        "base_model": str(student),
        "phases": [{"teacher": "tiny-a", "epochs": 1, "learning_rate": 1e-3}],
        "max_length": 96,
        "per_device_batch_size": 2,
        "lr_scheduler": "constant",
        **over,
    }
    return parse_section(TrainConfig, data, section="train")


def _fixed_set_loss(model_dir: Path | str, tok, examples) -> float:
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    packs = pack_examples(examples, 96)
    batch = PackedCollator(tok.pad_token_id)([PackedDataset.from_packs(packs)[i] for i in range(len(packs))])
    with torch.no_grad():
        return float(model(**batch, use_cache=False).loss)


def test_phases_run_in_configured_order(setup: tuple[Path, Path], tmp_path: Path) -> None:
    release, student = setup
    # deliberately not alphabetical: the order is the params' order
    phases = [
        {"teacher": "tiny-b", "epochs": 2, "learning_rate": 2e-3},
        {"teacher": "tiny-a", "epochs": 1, "learning_rate": 5e-4},
    ]
    params = {"base": {"seed": 7}, "train": {**_cfg(release, student).model_dump(), "phases": phases}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    out, metrics_path, plots = tmp_path / "sft", tmp_path / "metrics.json", tmp_path / "loss.csv"
    args = ["--params", str(tmp_path / "params.yaml"), "--out", str(out)]
    assert main([*args, "--metrics", str(metrics_path), "--plots", str(plots)]) == 0

    metrics = json.loads(metrics_path.read_text())
    assert metrics["phase_order"] == ["tiny-b", "tiny-a"]
    assert [p["teacher"] for p in metrics["phases"]] == ["tiny-b", "tiny-a"]
    assert [p["learning_rate"] for p in metrics["phases"]] == [2e-3, 5e-4]
    assert metrics["packing"] is True and metrics["packing_isolated"] is True
    for p in metrics["phases"]:
        assert p["rows_in"] == 8 and p["examples"] == 8 and p["removed"] == {}
        assert p["sequences"] < p["examples"]  # packed
        assert p["tokens"] > 0 and p["steps"] > 0
    timings = json.loads((tmp_path / "run.json").read_text())
    assert [t["teacher"] for t in timings["phases"]] == ["tiny-b", "tiny-a"]
    assert all(t["tokens_per_s"] > 0 for t in timings["phases"]) and timings["runtime_s"] > 0
    assert metrics["tokens"] == sum(p["tokens"] for p in metrics["phases"])

    with plots.open() as fh:
        curve = list(csv.DictReader(fh))
    assert [int(r["step"]) for r in curve] == list(range(1, len(curve) + 1))
    assert [r["teacher"] for r in curve] == ["tiny-b"] * metrics["phases"][0]["steps"] + ["tiny-a"] * metrics[
        "phases"
    ][1]["steps"]
    assert {float(r["learning_rate"]) for r in curve if r["phase"] == "1"} == {2e-3}
    assert {float(r["learning_rate"]) for r in curve if r["phase"] == "2"} == {5e-4}

    tuned = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(student)
    assert tuned.config.use_cache is True
    assert AutoTokenizer.from_pretrained(out).chat_template is not None
    assert not torch.equal(tuned.model.embed_tokens.weight, base.model.embed_tokens.weight)


def test_loss_falls_markedly_on_a_tiny_fixed_set(setup: tuple[Path, Path], tmp_path: Path) -> None:
    release, student = setup
    cfg = _cfg(
        release,
        student,
        phases=[{"teacher": "tiny-b", "epochs": 16, "learning_rate": 1e-2}],
        per_device_batch_size=1,
    )
    metrics, curve, _ = train_progressive(cfg, seed=3, out_dir=tmp_path / "sft")
    assert len(curve) >= 40  # a few dozen optimizer steps
    first, last = curve[0]["loss"], curve[-1]["loss"]
    assert last < 0.5 * first, (first, last)

    tok = AutoTokenizer.from_pretrained(student)
    examples, _ = format_rows(tok, trace_rows("tiny-b"), max_length=96)
    before = _fixed_set_loss(student, tok, examples)
    after = _fixed_set_loss(tmp_path / "sft", tok, examples)
    assert after < 0.5 * before, (before, after)
    assert metrics["final_loss"] == last


def test_bad_release_config_or_context_fail_clearly(setup: tuple[Path, Path], tmp_path: Path) -> None:
    release, student = setup
    cfg = _cfg(release, student, phases=[{"teacher": "nope", "epochs": 1, "learning_rate": 1e-3}])
    with pytest.raises(TrainError, match="cannot load config 'nope'"):
        train_progressive(cfg, seed=0, out_dir=tmp_path / "x")
    with pytest.raises(TrainError, match=r"exceeds .* context of 1024"):
        train_progressive(_cfg(release, student, max_length=4096), seed=0, out_dir=tmp_path / "x")
    assert not (tmp_path / "x").exists()
