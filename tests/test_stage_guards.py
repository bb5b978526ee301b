"""The stage runner's guards: inputs fixed for the whole run, bad params named in one line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from builders.prompts.__main__ import main as prompts_main
from core.config import load_params, load_section
from core.errors import ParamsError
from core.inputs import dvc_deps
from core.io import read_document, write_json
from core.stage import EXIT_FAILED, run_stage
from tests.failing import stage_fails
from tests.test_prompts import make_cfg, source  # noqa: F401  (the `source` fixture)

ROOT = Path(__file__).resolve().parents[1]


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_params_are_read_once_and_an_edit_mid_run_stops_the_stage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("demo: {fraction: 0.7}\n")
    out = tmp_path / "out"
    seen = []

    def body() -> None:
        seen.append(load_params(params)["demo"]["fraction"])
        write_json({"first": True}, out / "first.json")  # written while the inputs held
        params.write_text("demo: {fraction: 0.46}\n")  # the user edits params.yaml mid-run
        seen.append(load_params(params)["demo"]["fraction"])  # the run keeps what it read
        write_json({"second": True}, out / "second.json")  # refused: renamed only while inputs hold

    capsys.readouterr()
    assert run_stage("demo", body) == EXIT_FAILED
    assert seen == [0.7, 0.7]
    line = one_line(capsys)
    assert line.startswith(f"demo: {os.path.relpath(params)} changed while the stage ran;")
    assert "nothing more is written and DVC records nothing: run it again" in line
    assert (out / "first.json").exists() and not (out / "second.json").exists()
    assert not list(out.glob(".*.tmp"))


def test_an_edit_after_the_last_write_still_fails_the_stage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("demo: {x: 1}\n")

    def body() -> None:
        load_params(params)
        params.write_text("demo: {x: 2}\n")

    capsys.readouterr()
    assert run_stage("demo", body) == EXIT_FAILED  # DVC would record x: 2 for a run with x: 1
    assert "changed while the stage ran" in one_line(capsys)


def test_a_file_the_run_writes_is_an_output_not_a_pinned_input(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text('{"n": 1}')

    def body() -> None:
        n = read_document(path)["n"]
        write_json({"n": n + 1}, path)  # the run's own output (core.lockfile does this to dvc.lock)

    assert run_stage("demo", body) == 0
    assert read_document(path) == {"n": 2}


def test_under_dvc_a_dep_changed_mid_run_stops_the_stage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "dvc.yaml").write_text(
        yaml.safe_dump(
            {
                "vars": [{"dirs": {"inp": "inputs"}}],
                "stages": {"demo": {"cmd": "x", "deps": ["${dirs.inp}/table.txt", "code.py", "${nope.x}"]}},
            }
        )
    )
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / "table.txt").write_text("rows")
    (tmp_path / "code.py").write_text("x = 1")
    assert dvc_deps(tmp_path, "demo") == [tmp_path / "inputs/table.txt", tmp_path / "code.py"]
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.setenv("DVC_STAGE", "demo")
    monkeypatch.chdir(tmp_path)

    def body() -> None:
        (tmp_path / "inputs" / "table.txt").write_text("other rows")

    capsys.readouterr()
    assert run_stage("demo", body) == EXIT_FAILED
    assert one_line(capsys).startswith("demo: inputs/table.txt changed while the stage ran;")
    assert run_stage("demo", lambda: None) == 0


# --- bad params: one line naming the file and key -------------------------------------------------


def test_a_duplicate_yaml_key_is_refused_naming_file_line_and_key(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("prompts:\n  budget_scale: 1.0\n  seed: 1\n  budget_scale: 2.0\n")
    with pytest.raises(ParamsError) as err:
        load_params(params)
    assert str(err.value) == f"{params}: not valid YAML: duplicate key 'budget_scale' (line 4, column 3)"


def test_non_utf8_params_are_one_line(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_bytes(b"prompts:\n  source: caf\xe9\n")
    with pytest.raises(ParamsError, match=r"params.yaml: params file is not UTF-8 text \(byte 22\)$"):
        load_params(params)


def test_an_infinite_budget_is_one_line(
    source: Path,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    params = tmp_path / "params.yaml"
    cfg = make_cfg(source, tmp_path).model_dump(mode="json")
    cfg["budget_scale"] = float("inf")
    params.write_text(yaml.safe_dump({"base": {"seed": 1}, "prompts": cfg}))
    assert ".inf" in params.read_text()
    line = stage_fails(prompts_main, ["--params", str(params), "--out", str(tmp_path / "out")], capsys,
                       r"^prompts: ")  # fmt: skip
    assert line == f"prompts: {params}: prompts.budget_scale: Input should be a finite number"
    assert not (tmp_path / "out").exists()


def test_every_stage_config_refuses_infinity_and_nan(tmp_path: Path) -> None:
    from dedup.config import DedupConfig

    params = tmp_path / "params.yaml"
    for value in (".inf", "-.inf", ".nan"):
        params.write_text(f"dedup: {{threshold: {value}}}\n")
        with pytest.raises(ParamsError, match=r"dedup.threshold: Input should be a finite number"):
            load_section(DedupConfig, params, "dedup")
