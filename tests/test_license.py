"""The `license` stage: policy decisions, outputs, and clear errors with no partial output."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
import yaml

import builders.license.__main__ as stage
from builders.license.apply import LICENSED_PROMPT_SCHEMA, PROMPT_SCHEMA, apply_license
from builders.license.policy import REASONS, LicenseConfig
from builders.license.registry import REGISTRY_PATH, load_registry
from core.config import ParamsError, parse_section
from core.io import write_parquet

GOLDEN = Path(__file__).parent / "data" / "license" / "prompts.jsonl"
TEACHERS = {
    "tiny-a": {
        "license": "Apache-2.0",
        "outputs_may_train_models": True,
        "commercial_use": True,
        "url": None,
    },
    "tiny-b": {
        "license": "Apache-2.0",
        "outputs_may_train_models": True,
        "commercial_use": True,
        "url": None,
    },
}


@pytest.fixture(scope="module")
def registry():
    return load_registry()


@pytest.fixture(scope="module")
def prompts() -> pl.DataFrame:
    return pl.read_ndjson(GOLDEN).with_columns(pl.col("system_prompt_id").cast(pl.Int32))


def cfg(**section) -> LicenseConfig:
    return parse_section(LicenseConfig, section, section="license", source="params.yaml")


def test_default_policy_keeps_only_commercial_and_never_unknown(registry, prompts) -> None:
    res = apply_license(prompts, registry, cfg())
    assert res.kept.height > 0
    assert set(res.kept["license_use"]) == {"commercial"}
    assert "unknown" not in set(res.kept["license_resolution"])
    unknown = res.removed.filter(pl.col("reason") == "unknown_license")
    assert set(unknown["task_name"]) == {"bigbench_date_understanding", "task9999_made_up_task"}
    assert set(unknown["license_resolution"]) == {"unknown"}
    # the by_dataset row is kept, and its resolution is recorded
    quoref2 = res.kept.filter(pl.col("task_name") == "task002_quoref_answer_generation")
    assert set(quoref2["license_resolution"]) == {"by_dataset"}
    assert set(quoref2["source_dataset"]) == {"fc-sni-quoref"}
    funnel = res.stats["funnel"]
    assert funnel["rows_in"] == prompts.height == funnel["rows_out"] + sum(funnel["removed"].values())
    assert res.kept["id"].to_list() == sorted(res.kept["id"].to_list())


def test_each_reason_appears_in_removed(registry, prompts) -> None:
    res = apply_license(prompts, registry, cfg(allow_share_alike=False, deny_datasets=["fc-cot-cot_gsm8k"]))
    assert set(res.removed["reason"]) == set(REASONS)
    assert set(res.stats["funnel"]["removed"]) == set(REASONS)
    assert set(res.removed["stage"]) == {"license"}
    row = res.removed.filter(pl.col("task_name") == "anli/r1:0.1.0").row(0, named=True)
    assert row["reason"] == "non_commercial"
    assert "CC-BY-NC-4.0" in row["detail"]
    assert set(res.removed.filter(pl.col("task_name") == "dream_baseline")["reason"]) == {"academic_only"}
    assert set(res.removed.filter(pl.col("task_name") == "glue/qqp:2.0.0")["reason"]) == {
        "unspecified_license"
    }
    assert set(res.removed.filter(pl.col("task_name") == "qrecc")["reason"]) == {"share_alike"}
    assert not set(res.kept["share_alike"].to_list()) - {False}


def test_deny_wins_over_allow(registry, prompts) -> None:
    both = cfg(allow_datasets=["fc-cot-cot_gsm8k", "fc-p3-dream"], deny_datasets=["fc-cot-cot_gsm8k"])
    res = apply_license(prompts, registry, both)
    assert set(res.removed.filter(pl.col("source_dataset") == "fc-cot-cot_gsm8k")["reason"]) == {
        "denied_dataset"
    }
    assert "fc-cot-cot_gsm8k" not in set(res.kept["source_dataset"])
    # the allow list keeps an academic-only dataset, with its true license columns
    dream = res.kept.filter(pl.col("source_dataset") == "fc-p3-dream")
    assert dream.height == 2 and set(dream["license_use"]) == {"academic-only"}


def test_looser_policies(registry, prompts) -> None:
    res = apply_license(
        prompts, registry, cfg(allowed_uses=["commercial", "non-commercial"], allow_unknown=True)
    )
    assert {"commercial", "non-commercial", "unspecified"} <= set(res.kept["license_use"])
    assert "unknown" in set(res.kept["license_resolution"])
    assert set(res.removed["reason"]) == {"academic_only", "unspecified_license"}
    assert res.summary["release"]["use"] == "non-commercial"


def test_summary_counts_attributions_and_release_license(registry, prompts) -> None:
    res = apply_license(prompts, registry, cfg(teachers=TEACHERS))
    summary = res.summary
    assert sum(summary["counts"]["license"].values()) == res.kept.height
    assert summary["counts"]["license_use"] == {"commercial": res.kept.height}
    owed = {a["dataset"]: a for a in summary["attributions"]}
    assert owed["fc-cot-cot_gsm8k"]["license"] == "MIT"
    assert owed["fc-cot-cot_gsm8k"]["url"] == "https://github.com/openai/grade-school-math"
    assert summary["release"]["license"] == "other"
    assert summary["release"]["licenses"] == sorted(set(res.kept["license"]))
    assert summary["teachers"]["tiny-a"]["license"] == "Apache-2.0"
    one = apply_license(prompts.filter(pl.col("task_name").str.starts_with("cot_gsm8k")), registry, cfg())
    assert one.summary["release"] == {"license": "MIT", "licenses": ["MIT"], "use": "commercial"}


def test_coverage_on_input_and_audit(registry, prompts) -> None:
    cov = apply_license(prompts, registry, cfg()).stats["coverage"]
    tasks = prompts["task_name"].n_unique()
    assert cov["input"]["tasks"] == tasks
    assert cov["input"]["tasks_resolved"] == tasks - 2
    assert cov["input"]["rows_resolved"] == prompts.height - 4
    assert cov["input"]["by_resolution"]["by_dataset"] == {"tasks": 1, "rows": 2}
    assert cov["audit"]["tasks"] == len(registry.tasks) == cov["audit"]["tasks_resolved"]
    assert sum(cov["audit"]["tasks_by_use"].values()) == len(registry.tasks)
    assert cov["audit"]["by_submix"]["niv2"]["tasks"] == 347


@pytest.mark.parametrize(
    ("section", "pattern"),
    [
        ({"allowed_uses": ["comercial"]}, r"params\.yaml: license\.allowed_uses: .*'comercial'"),
        ({"allowed_uses": ["unspecified"]}, r"license\.allowed_uses: .*allow_unspecified"),
        ({"allow_unkown": True}, r"license\.allow_unkown: unknown key"),
        ({"teachers": {"tiny-a": {"license": "x", "commercial_use": True}}},
         r"license\.teachers\.tiny-a\.outputs_may_train_models"),
    ],
)  # fmt: skip
def test_bad_params_name_the_key(section, pattern) -> None:
    with pytest.raises(ParamsError, match=pattern):
        cfg(**section)


def _write_inputs(tmp_path: Path, prompts: pl.DataFrame, section: dict) -> tuple[Path, Path]:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"base": {"seed": 1}, "license": section}), encoding="utf-8")
    table = tmp_path / "prompts.parquet"
    write_parquet(prompts, table, PROMPT_SCHEMA)
    return params, table


def _run(params: Path, table: Path, out: Path, *extra: str) -> int:
    return stage.main(["--params", str(params), "--prompts", str(table), "--out", str(out), *extra])


def test_stage_writes_outputs_deterministically(tmp_path: Path, prompts) -> None:
    params, table = _write_inputs(tmp_path, prompts, {"teachers": TEACHERS})
    assert _run(params, table, tmp_path / "a") == 0
    assert _run(params, table, tmp_path / "b") == 0
    names = ["prompts.parquet", "removed.parquet", "license_summary.json", "stats.json"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    kept = pq.read_table(tmp_path / "a" / "prompts.parquet")
    assert kept.schema.equals(LICENSED_PROMPT_SCHEMA)
    assert set(kept.column("license_use").to_pylist()) == {"commercial"}
    stats = json.loads((tmp_path / "a" / "stats.json").read_text())
    assert stats["funnel"]["stage"] == "license" and stats["funnel"]["rows_out"] == kept.num_rows
    removed = pq.read_table(tmp_path / "a" / "removed.parquet")
    assert removed.column_names[:4] == ["id", "stage", "reason", "detail"]


@pytest.mark.parametrize(
    ("terms", "key"),
    [
        ({"commercial_use": False}, "commercial_use"),
        ({"outputs_may_train_models": False}, "outputs_may_train_models"),
    ],
)
def test_teacher_terms_conflicting_with_commercial_release(tmp_path: Path, prompts, terms, key) -> None:
    teachers = {**TEACHERS, "tiny-b": {**TEACHERS["tiny-b"], **terms}}
    params, table = _write_inputs(tmp_path, prompts, {"teachers": teachers})
    out = tmp_path / "out"
    with pytest.raises(ParamsError, match=rf"license\.teachers\.tiny-b\.{key} is false"):
        stage.run(params, table, out)
    assert _run(params, table, out) == 2
    assert not out.exists() or not any(out.iterdir())
    # a non-commercial release may use such a teacher, and records its terms
    params, table = _write_inputs(
        tmp_path, prompts, {"teachers": teachers, "allowed_uses": ["commercial", "non-commercial"]}
    )
    assert _run(params, table, out) == 0
    summary = json.loads((out / "license_summary.json").read_text())
    assert summary["teachers"]["tiny-b"][key] is False


def test_errors_leave_no_partial_output(tmp_path: Path, prompts) -> None:
    out = tmp_path / "out"
    params, table = _write_inputs(tmp_path, prompts, {"allowed_uses": ["commercial", "everything"]})
    assert _run(params, table, out) == 2
    params, table = _write_inputs(tmp_path, prompts, {"deny_datasets": ["fc-no-such-dataset"]})
    with pytest.raises(ParamsError, match=r"license\.deny_datasets\.0: 'fc-no-such-dataset'"):
        stage.run(params, table, out)
    bad_registry = tmp_path / "registry.json"
    data = json.loads(REGISTRY_PATH.read_text(encoding="utf-8"))
    del data["tasks"]
    bad_registry.write_text(json.dumps(data), encoding="utf-8")
    params, table = _write_inputs(tmp_path, prompts, {})
    assert _run(params, table, out, "--registry", str(bad_registry)) == 2
    write_parquet(prompts.drop("task_name").with_columns(pl.lit("").alias("task_name")), table, PROMPT_SCHEMA)
    with pytest.raises(ValueError, match=r"prompts\.parquet: row '.*' has an empty 'task_name'"):
        stage.run(params, table, out)
    assert not out.exists() or not any(out.iterdir())
