"""The `train` stage as dvc.yaml defines it, run by real `dvc repro` in a temporary git repository."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from builders.tiny_llama import build_tiny_llama
from tests.data.train.support import make_release, tokenizer_texts
from tests.dvcutil import dvc_status, keep_stages, make_dvc_repo, run_dvc

pytestmark = pytest.mark.slow


def _train_only(repo: Path) -> None:
    """dvc.yaml with the train stage only, small training params, a tiny release and base model."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    train = {**params["train"], "max_length": 128, "per_device_batch_size": 2}
    train["phases"] = [
        {"teacher": "tiny-a", "epochs": 1, "learning_rate": 1e-3},
        {"teacher": "tiny-b", "epochs": 1, "learning_rate": 5e-4},
    ]
    keep_stages(repo, "train")
    (repo / "params.yaml").write_text(yaml.safe_dump({**params, "train": train}, sort_keys=False))
    make_release(repo / train["release"])
    build_tiny_llama(repo / train["base_model"], tokenizer_texts())


def test_dvc_repro_train_stage(tmp_path: Path) -> None:
    repo = make_dvc_repo(tmp_path / "repo", prepare=_train_only)
    assert set(dvc_status(repo)) == {"train"}

    run_dvc(repo, "repro", "train")
    assert dvc_status(repo) == {}
    metrics_path = repo / "data/train/metrics.json"
    metrics = json.loads(metrics_path.read_text())
    assert metrics["phase_order"] == ["tiny-a", "tiny-b"]
    assert (repo / "models/student-sft/config.json").is_file()
    shown = json.loads(run_dvc(repo, "metrics", "show", "--json").stdout)
    assert "data/train/metrics.json" in shown[""]["data"]
    plots = json.loads(run_dvc(repo, "plots", "show", "--json").stdout)
    assert not plots.get("errors") and plots["data"]["data/train/loss.csv"]

    written = metrics_path.stat().st_mtime_ns
    run_dvc(repo, "repro", "train")
    assert dvc_status(repo) == {}
    assert metrics_path.stat().st_mtime_ns == written  # nothing ran
