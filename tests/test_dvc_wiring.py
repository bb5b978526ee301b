"""dvc.yaml stays honest: code deps are each stage's import closure, params are what it reads."""

from __future__ import annotations

import itertools
import shlex
from pathlib import Path

import yaml

from cards.inputs import CARD_KEYS, card_sections
from core.dvcdeps import PACKAGES, closure, differences, entry_module, main
from core.inputs import dvc_deps
from core.stages import load_filtering_stages
from tests.dvcutil import resolved_stages

ROOT = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def test_every_stage_runs_a_module_named_for_it() -> None:
    for name, stage in STAGES.items():
        entry = entry_module(stage["cmd"])
        assert entry is not None and entry.split(".")[-1] == name, (name, entry)


def test_code_deps_are_the_import_closure() -> None:
    assert differences() == {}, "run `python -m core.dvcdeps --write`"
    assert main([]) == 0


def test_closure_follows_imports_inside_functions() -> None:
    # the registry imports the OpenAI backend; a stage package's __main__ is its entry
    assert "builders/generation/openai_backend.py" in closure("builders.traces")
    assert {"core/__init__.py", "builders/prompts/__main__.py"} <= closure("builders.prompts")
    assert not any(p.startswith("train/") for p in closure("cards.release"))
    # verify's judge and eval generate through the generation library (one copy), and share the
    # answer checker
    assert {"builders/generation/loop.py", "builders/generation/cache.py"} <= closure("builders.verify")
    assert "builders/generation/vllm_backend.py" in closure("train.eval")
    assert "answers/check.py" in closure("builders.verify")


def test_no_stage_imports_another_stages_entry() -> None:
    stages = {name: entry_module(stage["cmd"]) for name, stage in STAGES.items()}
    entries = set()
    for entry in filter(None, stages.values()):
        path = ROOT / entry.replace(".", "/")
        entries.add(
            f"{entry.replace('.', '/')}/__main__.py" if path.is_dir() else f"{entry.replace('.', '/')}.py"
        )
    for name, entry in stages.items():
        assert entry is not None
        others = entries - {f"{entry.replace('.', '/')}/__main__.py", f"{entry.replace('.', '/')}.py"}
        assert not closure(entry) & others, name
    # the judge and eval generate through the generation library, not through the traces stage
    assert not any(
        f.startswith("builders/traces/") for f in closure("builders.verify") | closure("train.eval")
    )


def test_a_missing_module_is_reported(tmp_path: Path) -> None:
    text = (ROOT / "dvc.yaml").read_text().replace("      - dedup/lsh.py\n", "", 1)
    (tmp_path / "dvc.yaml").write_text(text)
    for pkg in PACKAGES:
        (tmp_path / pkg).symlink_to(ROOT / pkg)
    assert differences(tmp_path / "dvc.yaml") == {"dedup": {"missing": ["dedup/lsh.py"], "extra": []}}


def test_params_deps_exist_and_release_lists_what_the_card_prints() -> None:
    for name, stage in STAGES.items():
        for key in stage.get("params", []):
            node = PARAMS
            for part in str(key).split("."):
                assert isinstance(node, dict) and part in node, (name, key)
                node = node[part]
    filters = load_filtering_stages(ROOT / "dvc.yaml")
    assert STAGES["release"]["params"] == [*card_sections(filters), *CARD_KEYS]
    for stage in ("release", "train", *(f.name for f in filters)):
        assert not any(str(k).split(".")[0] == "eval" for k in STAGES[stage].get("params", [])), stage


def test_every_command_path_is_a_dep_or_an_out() -> None:
    for name, (cmd, deps, outs) in resolved_stages(ROOT).items():
        paths = deps + outs
        args = shlex.split(cmd)
        given = [v for flag, v in itertools.pairwise(args) if flag.startswith("--")]
        for value in given:
            if value in ("params.yaml", "dvc.lock"):
                continue  # params are declared key by key; release digests the lock (see dvc.yaml)
            related = [
                p for p in paths if p == value or p.startswith(value + "/") or value.startswith(p + "/")
            ]
            assert related, f"stage {name}: {value} is neither a dep nor an out (nor a folder of one)"
        assert "${" not in cmd, (name, cmd)


def test_the_release_reads_every_filtering_stage() -> None:
    """The funnel's stages are dvc.yaml's filtering stages, in its order; the release depends on each
    one's stats.json (it reads them from dvc.yaml, so DVC must know them as deps)."""
    filters = load_filtering_stages(ROOT / "dvc.yaml")
    assert [f.name for f in filters] == ["prompts", "license", "dedup", "traces", "verify"]
    assert [f.stats for f in filters] == [f"data/{f.name}/stats.json" for f in filters]
    assert [f.removed for f in filters] == [f"data/{f.name}/removed.parquet" for f in filters]
    deps = {p.relative_to(ROOT).as_posix() for p in dvc_deps(ROOT, "release")}
    assert {f.stats for f in filters} <= deps
