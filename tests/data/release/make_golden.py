"""Rebuild the golden inputs of the release tests (run from the repo root:
`.venv/bin/python tests/data/release/make_golden.py`). They follow docs/CONTRACTS.md.

`traces.parquet` and `verify_stats.json` are what the `verify` stage makes of the raw traces built
here (wrong answers flagged, not dropped, so every trace reaches the release)."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from builders.verify.config import VerifyConfig
from builders.verify.run import run_verify
from core.contracts import (
    Attribution,
    Funnel,
    LicenseSummary,
    ReleaseLicense,
    ShareAlike,
    TeacherRecord,
    TeacherTerms,
)
from core.schema import LICENSE_FIELDS, PROMPT_SCHEMA, TRACE_FIELDS

HERE = Path(__file__).parent

TRACE_SCHEMA = pa.schema(
    [*PROMPT_SCHEMA, *LICENSE_FIELDS, pa.field("cluster_id", pa.string(), nullable=False), *TRACE_FIELDS]
)
HELDOUT_SCHEMA = PROMPT_SCHEMA
SUBMIXES = [
    ("cot", "cot_gsm8k", 6),
    ("niv2", "task001_quoref", 1),
    ("t0", "adversarial_qa", 3),
    ("flan2021", "glue_mrpc", 8),
]
TEACHERS = {"small": "local/tiny-llama-a", "large": "local/tiny-llama-b"}
LICENSES = {
    "cot": ("gsm8k", "mit"),
    "niv2": ("quoref", "cc-by-4.0"),
    "t0": ("adversarial_qa", "cc-by-sa-4.0"),
    "flan2021": ("glue", "cc-by-4.0"),
}


def pid(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]


def reference(submix: str, i: int) -> str:
    """A short answer; a sentence for niv2 (an open answer no rule can check)."""
    if submix == "niv2":
        return f"Adding the number to itself gives {2 * i}, which is the sum the question asks for."
    return str(2 * i)


def prompts(n_per_submix: int, task_suffix: str = "") -> list[dict]:
    rows = []
    for submix, task, sid in SUBMIXES:
        for i in range(n_per_submix):
            q = f"[{submix}] question {i}{task_suffix}: what is {i} + {i}?"
            rows.append(
                {
                    "id": pid(submix, task + task_suffix, "zs_opt", q),
                    "submix": submix,
                    "task_name": task + task_suffix,
                    "template_type": "zs_opt",
                    "has_options": submix == "flan2021",
                    "system_prompt_id": sid + i % 2,
                    "system_prompt": f"system message {sid + i % 2}",
                    "question": q,
                    "reference": reference(submix, i),
                }
            )
    return sorted(rows, key=lambda r: r["id"])


def response(teacher: str, row: dict) -> str:
    """The teacher's explanation: right, except the large teacher's on cot."""
    if teacher == "large" and row["submix"] == "cot":
        return f"Let me explain step by step. {row['reference']} is tempting, but the answer is 99."
    return f"Let me explain step by step. The answer is {row['reference']}."


def verify(traces: list[dict]) -> None:
    """Run the verify stage's code on the raw traces; keep its table and stats as golden inputs."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.parquet"
        pq.write_table(pa.Table.from_pylist(traces, schema=TRACE_SCHEMA), raw)
        run_verify(raw, VerifyConfig(drop_wrong=False), Path(tmp) / "verify", Path(tmp) / "cache")
        shutil.copy(Path(tmp) / "verify" / "traces.parquet", HERE / "traces.parquet")
        shutil.copy(Path(tmp) / "verify" / "stats.json", HERE / "verify_stats.json")


def main() -> None:
    base = prompts(3)
    traces = []
    for r in base:
        src, lic = LICENSES[r["submix"]]
        for teacher, model in TEACHERS.items():
            if teacher == "large" and r["submix"] == "t0":
                continue  # the strong teacher answers a subset, as in Orca
            traces.append(
                {
                    **r,
                    "source_dataset": src,
                    "license": lic,
                    "license_use": "commercial",
                    "attribution_required": lic != "mit",
                    "share_alike": lic.endswith("-sa-4.0"),
                    "license_resolution": "exact",
                    "cluster_id": r["id"],
                    "teacher": teacher,
                    "teacher_model": model,
                    "response": response(teacher, r),
                    "finish_reason": "stop",
                    "prompt_tokens": 20,
                    "completion_tokens": 12,
                }
            )
    traces.sort(key=lambda r: (r["id"], r["teacher"]))
    verify(traces)
    heldout = prompts(1, task_suffix="_heldout")
    pq.write_table(pa.Table.from_pylist(heldout, schema=HELDOUT_SCHEMA), HERE / "heldout.parquet")
    n_prompts = len(base)
    n_traces = len(traces)
    stats = {
        "prompts": {
            "funnel": {
                "stage": "prompts",
                "rows_in": 31,
                "rows_out": n_prompts + len(heldout),
                "removed": {"excluded_task": 7, "over_budget": 31 - 7 - n_prompts - len(heldout)},
            },
            "budgets": {"cot": 15, "niv2": 44, "t0": 200, "flan2021": 250, "dialog": 0},
            "rows_per_submix": {"cot": 4, "niv2": 4, "t0": 4, "flan2021": 4, "dialog": 0},
            "shortfall": {"cot": 11, "niv2": 40, "t0": 196, "flan2021": 246, "dialog": 0},
            "tasks_per_submix": {"cot": 1, "niv2": 1, "t0": 1, "flan2021": 1, "dialog": 0},
            "rows_per_system_prompt": {"1": 2, "2": 2, "3": 2, "4": 2, "6": 2, "7": 2, "8": 2, "9": 2},
            "heldout_rows": len(heldout),
        },
        "license": {
            "funnel": {
                "stage": "license",
                "rows_in": n_prompts + 1,
                "rows_out": n_prompts + 1,
                "removed": {"unknown_license": 0, "non_commercial": 0},
            },
            "rows_per_license": {"mit": 3, "cc-by-4.0": 6, "cc-by-sa-4.0": 3, "other": 1},
        },
        "dedup": {
            "funnel": {
                "stage": "dedup",
                "rows_in": n_prompts + 1,
                "rows_out": n_prompts,
                "removed": {"exact_duplicate": 0, "near_duplicate": 1, "contaminated": 0},
            },
            "exact_duplicates": 0,
            "near_duplicates": 1,
            "clusters": 12,
            "cluster_size_histogram": {"1": 11, "2": 1},
            "contaminated": {"bbh": 0},
            "minhash": {"num_perm": 128, "threshold": 0.8},
        },
        "traces": {
            "funnel": {
                "stage": "traces",
                "rows_in": n_prompts * 2,
                "rows_out": n_traces,
                "removed": {"not_in_subset": 3, "truncated": 0, "empty_response": 0},
            },
            "rows_per_teacher": {"small": 12, "large": 9},
        },
    }
    for stage, st in stats.items():
        Funnel.model_validate(st["funnel"])
        (HERE / f"{stage}_stats.json").write_text(json.dumps(st, indent=2, sort_keys=True) + "\n")
    attribution = [
        ("glue", "GLUE", "cc-by-4.0", "https://gluebenchmark.com/", 6),
        ("quoref", "Quoref", "cc-by-4.0", "https://allenai.org/data/quoref", 1),
        ("adversarial_qa", "AdversarialQA", "cc-by-sa-4.0", "https://adversarialqa.github.io/", 3),
    ]
    local = {"license": "apache-2.0", "outputs_may_train_models": True, "commercial_use": True}
    summary = LicenseSummary(
        registry={"audit": "tests/data/release (golden)"},
        policy={"allowed_uses": ["commercial"]},
        rows=12,
        counts={"license": {"cc-by-4.0": 6, "cc-by-sa-4.0": 3, "mit": 3}, "license_use": {"commercial": 12}},
        attributions=[
            Attribution(dataset=d, name=n, license=lic, url=u, license_urls=[], rows=r)
            for d, n, lic, u, r in attribution
        ],
        share_alike=[ShareAlike(dataset="adversarial_qa", license="cc-by-sa-4.0", rows=3)],
        teachers={t: TeacherTerms(**local) for t in TEACHERS},
        release=ReleaseLicense(
            license="other", licenses=["cc-by-4.0", "cc-by-sa-4.0", "mit"], use="commercial"
        ),
    ).dump()
    (HERE / "license_summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    meta = HERE / "meta"
    meta.mkdir(exist_ok=True)
    for teacher, model in TEACHERS.items():
        m = TeacherRecord(
            teacher=teacher,
            model=model,
            revision="0123abcd",
            requested_revision=None,
            backend="vllm",
            vllm_version="0.32.0",
            sampling={"temperature": 0.7, "top_p": 0.95, "max_tokens": 64, "seed": 20231101},
            max_model_len=512,
            fraction=1.0,
            prompt_tokens_total=240,
            completion_tokens_total=144,
        ).dump()
        (meta / f"{teacher}.json").write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")
    lock = {
        "schema": "2.0",
        "stages": {
            s: {"cmd": f"python -m x.{s}", "outs": [{"path": f"data/{s}", "md5": pid(s)}]}
            for s in ("prompts", "license", "dedup", "traces", "verify")
        },
    }
    import yaml

    (HERE / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))


if __name__ == "__main__":
    main()
