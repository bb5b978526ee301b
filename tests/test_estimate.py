"""The bill before the run (`python -m builders.traces --estimate`) against what the run then reports.

A fast test against the local paid-API server (no tokenizer: the stated approximation), and the
demo (its prompts and its tiny-a teacher, built by the pipeline's own stages) served by a real
`vllm serve`, whose `usage` the estimate's token count must match within 2%.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from builders.license.__main__ import run as run_license
from builders.prompts.__main__ import run as run_prompts
from builders.tiny_models import run as run_tiny_models
from builders.traces.__main__ import main
from builders.traces.estimate import TeacherEstimate
from dedup.dedup import run as run_dedup
from tests.paidserver import PaidServer
from tests.test_traces_common import prompt_table
from tests.test_traces_failures import teacher
from tests.vllmserve import vllm_serve

ROOT = Path(__file__).resolve().parents[1]
PRICE = {"input": 150.0, "output": 600.0}  # per million tokens (large, so costs read well)
TERMS = {"license": "Apache-2.0", "outputs_may_train_models": True, "commercial_use": True, "url": None}


def write_params(path: Path, teachers: list[dict[str, Any]], **traces: Any) -> Path:
    params = {"base": {"seed": 5}, "license": {"teachers": {t["name"]: TERMS for t in teachers}},
              "traces": {"teachers": teachers, "min_new_tokens": 4, "remove_truncated": False,
                         "min_response_chars": 0, **traces}}  # fmt: skip
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def bill(
    params: Path, prompts: Path, cache: Path, pilot: int, capsys: pytest.CaptureFixture[str]
) -> tuple[TeacherEstimate, str]:
    """The estimate through the command line (printed) and as data (the same call, nothing sent)."""
    from builders.traces.config import TracesConfig
    from builders.traces.estimate import estimate_traces
    from core.config import load_stage

    argv = ["--params", str(params), "--prompts", str(prompts), "--cache", str(cache), "--estimate"]
    assert main([*argv, "--pilot", str(pilot)]) == 0
    printed = capsys.readouterr().out
    cfg, seed = load_stage(TracesConfig, params, "traces")
    (estimate,) = estimate_traces(prompts, cfg, seed, cache, pilot=pilot)
    return estimate, printed


def actual(run: dict[str, Any], price: dict[str, float]) -> float:
    return (run["prompt_tokens"] * price["input"] + run["completion_tokens"] * price["output"]) / 1e6


def test_estimate_without_a_tokenizer_brackets_the_bill(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = prompt_table(60)
    prompts.write_parquet(tmp_path / "prompts.parquet")
    server = PaidServer()
    params = write_params(tmp_path / "params.yaml", [teacher([server.url], price=PRICE, timeout_s=10.0)])
    try:
        est, printed = bill(params, tmp_path / "prompts.parquet", tmp_path / "cache", 12, capsys)
        assert len(server.answered) == 12  # the pilot; the second estimate sent nothing more
        assert main(["--params", str(params), "--prompts", str(tmp_path / "prompts.parquet"),
                     "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache")]) == 0  # fmt: skip
    finally:
        server.close()
    run = json.loads((tmp_path / "out" / "run.json").read_text())["teachers"]["tiny-a"]
    assert est.cached == 12 and est.to_send == run["sent"] == 48
    assert "approximated: characters / 4" in est.input_method and "approximated" in printed
    assert est.input_low <= run["prompt_tokens"] <= est.input_high
    assert est.output_low <= run["completion_tokens"] <= est.output_high <= est.output_max == 48 * 16
    cost = est.cost["online"]  # type: ignore[index]
    assert cost["low"] <= actual(run, PRICE) <= cost["high"] <= cost["worst"]
    assert est.cost["batch"]["high"] == pytest.approx(cost["high"] / 2)  # type: ignore[index]
    assert "teacher tiny-a (openai)" in printed and "48 to send" in printed


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    """The demo's deduplicated prompts and its tiny-a teacher, from the pipeline's own stages; with
    the demo's tiny-a settings."""
    root = tmp_path_factory.mktemp("demo")
    params = ROOT / "params.yaml"
    run_prompts(params, root / "prompts")
    run_license(params, root / "prompts" / "prompts.parquet", root / "license")
    run_dedup(params, root / "license" / "prompts.parquet", root / "dedup")
    run_tiny_models(params, ROOT / "sample" / "flan", root / "models")
    (tiny_a,) = [t for t in yaml.safe_load(params.read_text())["traces"]["teachers"] if t["name"] == "tiny-a"]
    return root / "dedup" / "prompts.parquet", root / "models" / "tiny-a", tiny_a


@pytest.mark.slow
def test_estimate_of_the_demo_matches_usage(
    demo: tuple[Path, Path, dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts, model, tiny_a = demo
    with vllm_serve(model, tmp_path / "serve.log", max_model_len=tiny_a["max_model_len"]) as url:
        served = {"name": "tiny-a", "backend": "openai", "model": str(model), "base_urls": [url],
                  "served_model_name": str(model), "max_model_len": tiny_a["max_model_len"],
                  "sampling": tiny_a["sampling"], "concurrency": 16, "price": PRICE}  # fmt: skip
        params = write_params(tmp_path / "params.yaml", [served])
        est, printed = bill(params, prompts, tmp_path / "cache", 10, capsys)
        assert main(["--params", str(params), "--prompts", str(prompts), "--out", str(tmp_path / "out"),
                     "--cache", str(tmp_path / "cache")]) == 0  # fmt: skip
    run = json.loads((tmp_path / "out" / "run.json").read_text())["teachers"]["tiny-a"]
    n = pl.read_parquet(prompts).height
    assert est.selected == n and est.cached == 10 and est.to_send == run["sent"]
    assert "counted with the tokenizer" in est.input_method
    error = abs(est.input_tokens - run["prompt_tokens"]) / run["prompt_tokens"]
    cost = est.cost["online"]  # type: ignore[index]
    print(printed)
    spent = actual(run, PRICE)
    print(f"input tokens: estimate {est.input_tokens}, usage {run['prompt_tokens']} ({error:.2%}); output: "
          f"estimate {est.output_expected} [{est.output_low}, {est.output_high}], usage "
          f"{run['completion_tokens']}; cost {spent:.4f} in "
          f"[{cost['low']:.4f}, {cost['high']:.4f}]")  # fmt: skip
    assert error <= 0.02
    assert cost["low"] <= spent <= cost["high"]
