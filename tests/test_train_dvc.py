"""The `train` stage as dvc.yaml defines it, run by real `dvc repro` in a temporary git repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from builders.tiny_llama import build_tiny_llama
from tests.data.train.support import make_release, tokenizer_texts

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(REPO),
        "DVC_NO_ANALYTICS": "1",
    }
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)


def test_dvc_repro_train_stage(tmp_path: Path) -> None:
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["train"]
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    train = {**params["train"], "max_length": 128, "per_device_batch_size": 2}
    train["phases"] = [
        {"teacher": "tiny-a", "epochs": 1, "learning_rate": 1e-3},
        {"teacher": "tiny-b", "epochs": 1, "learning_rate": 5e-4},
    ]
    for dep in stage["deps"]:
        if dep.startswith(("train/", "builders/")):
            (tmp_path / dep).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / dep, tmp_path / dep)
    make_release(tmp_path / train["release"])
    build_tiny_llama(tmp_path / train["base_model"], tokenizer_texts())
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"train": stage}}, sort_keys=False))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"base": params["base"], "train": train}))
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        assert _run(cmd, tmp_path).returncode == 0

    first = _run(["dvc", "repro", "train"], tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    metrics = json.loads((tmp_path / "data/train/metrics.json").read_text())
    assert metrics["phase_order"] == ["tiny-a", "tiny-b"]
    assert (tmp_path / "models/student-sft/config.json").is_file()
    shown = json.loads(_run(["dvc", "metrics", "show", "--json"], tmp_path).stdout)
    assert "data/train/metrics.json" in json.dumps(shown)
    plots = _run(["dvc", "plots", "show", "--json"], tmp_path)
    assert plots.returncode == 0 and "data/train/loss.csv" in plots.stdout

    again = _run(["dvc", "repro", "train"], tmp_path)
    assert again.returncode == 0 and "didn't change" in again.stdout, again.stdout
