"""The license registry against the Data Provenance Initiative's audit files (tests/data/license_audit)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from builders.license import refresh
from builders.license.audit import AUDIT_FILES, AuditError, build_registry
from builders.license.registry import REGISTRY_PATH, RegistryError, load_registry, resolve_task

# The audit's files, verbatim (tests/data/license_audit/README.md says where they come from).
AUDIT_DIR = Path(__file__).parent / "data" / "license_audit"


@pytest.fixture(scope="module")
def registry():
    return load_registry()


@pytest.fixture(scope="module")
def audit_entries() -> dict[str, dict]:
    """task_name -> the audit entry that lists it."""
    out = {}
    for filename in AUDIT_FILES.values():
        for entry in json.loads((AUDIT_DIR / filename).read_text(encoding="utf-8")).values():
            for task in entry["Dataset Filter IDs"]:
                out[task] = entry
    return out


def test_refresh_rebuilds_committed_registry_byte_for_byte(tmp_path: Path) -> None:
    out = tmp_path / "registry.json"
    assert refresh.main(["--audit", str(AUDIT_DIR), "--out", str(out)]) == 0
    assert out.read_bytes() == REGISTRY_PATH.read_bytes()
    assert refresh.main(["--audit", str(AUDIT_DIR), "--out", str(REGISTRY_PATH), "--check"]) == 0


# (task, submix, audit license names, license column, use class, attribution, share-alike)
REAL_TASKS = [
    ("cot_gsm8k", "cot", ["MIT License"], "MIT", "commercial", True, False),
    ("qrecc", "dialog", ["CC BY-SA 3.0"], "CC-BY-SA-3.0", "commercial", True, True),
    ("anli/r1:0.1.0", "flan2021", ["CC BY-NC 4.0"], "CC-BY-NC-4.0", "non-commercial", True, False),
    ("ag_news_subset:1.0.0", "flan2021", ["Custom"], "Custom", "academic-only", True, False),
    ("glue/qqp:2.0.0", "flan2021", ["Custom"], "Custom", "unspecified", True, True),
    ("dream_baseline", "t0", ["Academic Research Purposes Only"], "Academic Research Purposes Only",
     "academic-only", True, True),
    ("amazon_polarity_Is_this_review", "t0", ["Unspecified"], "Unspecified", "unspecified", False, False),
    ("duorc_SelfRC_question_answering", "t0", ["Non Commercial"], "Non Commercial", "non-commercial",
     False, False),
    ("task001_quoref_question_generation", "niv2", ["CC BY 4.0"], "CC-BY-4.0", "commercial", True, False),
    ("task1541_agnews_classification", "niv2", ["Custom"], "Custom", "non-commercial", True, False),
    ("task284_imdb_classification", "niv2", ["Unspecified"], "Unspecified", "unspecified", False, False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("task", "submix", "names", "license", "use", "attribution", "share_alike"), REAL_TASKS
)
def test_real_tasks_resolve_to_the_audits_license(
    registry, audit_entries, task, submix, names, license, use, attribution, share_alike
) -> None:
    assert sorted(lic["License"] for lic in audit_entries[task]["Licenses"]) == names
    res = resolve_task(registry, task, submix)
    assert res.resolution == "exact"
    ds = registry.datasets[res.dataset_id]
    assert ds.submix == submix
    assert (ds.license, ds.license_use, ds.attribution_required, ds.share_alike) == (
        license,
        use,
        attribution,
        share_alike,
    )


def test_real_tasks_cover_all_four_use_classes() -> None:
    assert {row[4] for row in REAL_TASKS} == {"commercial", "unspecified", "non-commercial", "academic-only"}


def test_every_audit_task_is_in_the_registry(registry, audit_entries) -> None:
    assert set(registry.tasks) == set(audit_entries)
    assert len(registry.tasks) == 633


def test_several_licenses_most_restrictive_wins(registry) -> None:
    # flores: CC BY-SA 4.0 (commercial, share-alike) + CC BY-NC 4.0 (non-commercial)
    flores = registry.datasets[registry.tasks["task1514_flores_translation_entone"]]
    assert sorted(lic.use for lic in flores.licenses) == ["commercial", "non-commercial"]
    assert flores.license_use == "non-commercial"
    assert flores.share_alike and flores.attribution_required
    assert flores.license == "CC-BY-NC-4.0 AND CC-BY-SA-4.0"
    # biocreative_v: Unspecified + Request Form (academic-only)
    bc5 = registry.datasets[registry.tasks["task1449_disease_entity_extraction_bc5cdr_dataset"]]
    assert sorted(lic.use for lic in bc5.licenses) == ["academic-only", "unspecified"]
    assert bc5.license_use == "academic-only"


def test_by_dataset_rule(registry) -> None:
    # another NIV2 task of an audited source dataset (quoref is audited as task001)
    assert resolve_task(registry, "task002_quoref_answer_generation", "niv2").dataset_id == "fc-sni-quoref"
    assert resolve_task(registry, "task002_quoref_answer_generation", "niv2").resolution == "by_dataset"
    # another P3 template of an audited dataset, an inverted CoT task, a new TFDS version
    assert resolve_task(registry, "adversarial_qa_dbert_based_on", "t0").dataset_id == "fc-p3-adversarial_qa"
    assert resolve_task(registry, "stream_qed_ii", "cot").resolution == "exact"
    assert resolve_task(registry, "anli/r1:0.2.0", "flan2021").dataset_id == "fc-flan-anli_r1"
    # the stem must belong to the same submix; nothing else is guessed
    assert resolve_task(registry, "task002_quoref_answer_generation", "t0").resolution == "unknown"
    assert resolve_task(registry, "task9999_made_up_task", "niv2").resolution == "unknown"
    assert resolve_task(registry, "bigbench_date_understanding", "t0").resolution == "unknown"


def test_malformed_registry_names_file_and_key(tmp_path: Path) -> None:
    data = json.loads(REGISTRY_PATH.read_text(encoding="utf-8"))
    data["datasets"]["fc-sni-quoref"]["license_use"] = "mostly-commercial"
    bad = tmp_path / "registry.json"
    bad.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(RegistryError, match=r"registry\.json: datasets\.fc-sni-quoref\.license_use"):
        load_registry(bad)
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(RegistryError, match=r"registry\.json: not valid JSON"):
        load_registry(bad)
    data = json.loads(REGISTRY_PATH.read_text(encoding="utf-8"))
    data["tasks"]["task001_quoref_question_generation"] = "fc-sni-nowhere"
    bad.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(RegistryError, match=r"tasks\.task001_quoref_question_generation: unknown dataset"):
        load_registry(bad)


@pytest.fixture
def audit_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "audit"
    shutil.copytree(AUDIT_DIR, dst)
    for p in dst.iterdir():
        p.chmod(0o644)
    return dst


def test_malformed_audit_unknown_license_names_file_and_key(audit_copy: Path, tmp_path: Path) -> None:
    path = audit_copy / AUDIT_FILES["flan2021"]
    data = json.loads(path.read_text(encoding="utf-8"))
    data["fc-flan-aeslc"]["Licenses"][0]["License"] = "Made-Up License 9"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(
        AuditError, match=r"Flan 2021\)\.json: fc-flan-aeslc\.Licenses\[0\]: license 'Made-Up"
    ):
        build_registry(audit_copy)
    out = tmp_path / "out.json"
    assert refresh.main(["--audit", str(audit_copy), "--out", str(out)]) == 2
    assert not out.exists()


def test_malformed_audit_json_and_classes(audit_copy: Path) -> None:
    (audit_copy / AUDIT_FILES["t0"]).write_text("[1, 2", encoding="utf-8")
    with pytest.raises(AuditError, match=r"\(P3\)\.json: not valid JSON"):
        build_registry(audit_copy)
    (audit_copy / "license_classes.json").write_text(json.dumps({"MIT License": ["Maybe", "1", "0"]}))
    with pytest.raises(AuditError, match=r"license_classes\.json: 'MIT License'"):
        build_registry(audit_copy)


def test_malformed_audit_filter_ids(audit_copy: Path) -> None:
    path = audit_copy / AUDIT_FILES["cot"]
    data = json.loads(path.read_text(encoding="utf-8"))
    data["fc-cot-cot_gsm8k"]["Dataset Filter IDs"] = "cot_gsm8k"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(AuditError, match=r"fc-cot-cot_gsm8k\.Dataset Filter IDs: expected a list"):
        build_registry(audit_copy)
