"""Every benchmark under `benchmarks/` runs at a tiny size: a smoke test that it still works.

Each benchmark is one entry of `BENCHMARKS`: its module's `main` and the arguments of a tiny run
(no timing is asserted; speed and memory figures belong to the benchmarks themselves). A module
with a `main` that has no entry fails `test_every_benchmark_has_a_smoke_run`, so a new benchmark
cannot go unrun. Everything it needs is here or generated: no `../shared`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.test_traces_common import build_teacher

ROOT = Path(__file__).resolve().parents[1]
# samples of ../shared/data/real's niv1_dev and flan_dev (tests/data/dedup, with their licences)
REAL_SAMPLES = [str(ROOT / "tests" / "data" / "dedup" / f"{n}_dev_sample.jsonl") for n in ("niv1", "flan")]


def teacher(tmp: Path) -> str:
    return str(build_teacher(tmp / "tiny-teacher"))


TINY_GENERATION = ["--mean-tokens", "4", "--max-tokens", "8", "--batch-size", "4", "--max-model-len", "256",
                   "--dtype", "float32"]  # fmt: skip

# benchmark module -> the arguments of a tiny run (given a temp folder)
BENCHMARKS: dict[str, Callable[[Path], list[str]]] = {
    # with no ../shared it reads the copied real rows (tests/data/answers); its figures are checked
    # in tests/test_answers_flan.py
    "answers": lambda t: ["--shared", str(t / "absent"), "--repeat", "1"],
    "dedup": lambda t: [
        "--n",
        "2000",
        "--baseline-n",
        "200",
        "--repeat",
        "1",
        "--skip-legacy",
        "--real",
        *REAL_SAMPLES,
        "--edits",
        "20",
    ],
    "dedup_stages": lambda t: ["--real", *REAL_SAMPLES, "--edits", "20"],
    "openai_client": lambda t: ["--requests", "200", "--servers", "1", "--rounds", "1"],
    "orca_scale": lambda t: ["--work", str(t / "orca"), "--scale", "0.0002"],
    "prompts": lambda t: ["--rows", "4000", "--tasks", "5", "--workdir", str(t)],
    "prompts_scale": lambda t: [
        "--preset",
        "niv2",
        "--scale",
        "0.0002",
        "--baseline",
        "--work",
        str(t / "p"),
    ],
    "teachers": lambda t: ["--model", teacher(t), "--prompts", "12", "--rounds", "1", *TINY_GENERATION],
    "traces_scale": lambda t: ["--n", "300", "--work", str(t / "traces")],
    "verify": lambda t: ["--rows", "2000", "--rounds", "1"],
    "train": lambda t: ["--steps", "2", "--rows", "24", "--max-length", "128", "--batch-size", "2"],
}


def test_every_benchmark_has_a_smoke_run() -> None:
    with_main = {p.stem for p in (ROOT / "benchmarks").glob("*.py") if "\ndef main(" in p.read_text()}
    assert with_main == set(BENCHMARKS)


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_benchmark_runs_at_a_tiny_size(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)  # benchmarks start `python -m benchmarks.<name>` children
    main = importlib.import_module(f"benchmarks.{name}").main
    assert main(BENCHMARKS[name](tmp_path)) == 0
    assert capsys.readouterr().out.strip()  # it printed its figures
