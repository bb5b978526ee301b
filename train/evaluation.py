"""Evaluation of the base and fine-tuned students on the held-out FLAN tasks (library of `eval`).

Each model answers every held-out prompt through the generation library's vLLM backend
(`builders.generation.vllm_backend`), with the same chat formatting training used;
replies are scored against the FLAN references (`answers`) per submix and overall.
"""

from __future__ import annotations

import gc
import logging
from typing import Any

import polars as pl
import pyarrow as pa
from datasets import load_dataset
from tqdm import tqdm
from transformers import AutoTokenizer

from answers.score import accuracy_table, score_one
from builders.generation.base import GenError, GenRequest, SamplingConfig
from builders.generation.vllm_backend import VLLMBackend, VLLMTeacher
from core.chat import build_messages
from core.errors import PipelineError
from core.schema import fields
from train.config import EvalConfig
from train.format import prompt_ids

logger = logging.getLogger(__name__)

PROMPT_FIELDS = ("id", "submix", "task_name", "has_options", "system_prompt", "question", "reference")
PREDICTIONS_SCHEMA = pa.schema(
    fields("id? model? submix? task_name? reference? prediction? method? correct?:bool")
)


class EvalError(PipelineError):
    """The evaluation set or a model cannot be used."""


def load_heldout(cfg: EvalConfig) -> list[dict[str, Any]]:
    """The evaluation prompts, loaded with `load_dataset` as a user would, sorted by id."""
    kwargs: dict[str, Any] = {"split": cfg.split}
    if cfg.revision:
        kwargs["revision"] = cfg.revision
    ds = load_dataset(cfg.dataset, cfg.config, **kwargs)
    missing = [c for c in PROMPT_FIELDS if c not in ds.column_names]
    if missing:
        raise EvalError(f"{cfg.dataset} ({cfg.config}/{cfg.split}): missing columns {missing}")
    rows = sorted(ds.select_columns(list(PROMPT_FIELDS)), key=lambda r: r["id"])
    if cfg.max_rows is not None:
        rows = rows[: cfg.max_rows]
    if not rows:
        raise EvalError(f"{cfg.dataset} ({cfg.config}/{cfg.split}): no rows")
    return rows


def eval_teacher(label: str, model: str, cfg: EvalConfig, seed: int, rows: int) -> VLLMTeacher:
    """The generation library's vLLM config for one model under evaluation: eval's engine settings,
    its sampling (top_p 1), every request in the engine at once."""
    s = SamplingConfig(temperature=cfg.temperature, top_p=1.0, max_tokens=cfg.max_new_tokens, seed=seed)
    return VLLMTeacher(name=label, model=model, sampling=s, max_model_len=cfg.max_model_len,
                       dtype=cfg.dtype, gpu_memory_utilization=cfg.gpu_memory_utilization,
                       max_in_flight=max(rows, 1))  # fmt: skip


def generate(label: str, model: str, rows: list[dict[str, Any]], cfg: EvalConfig, seed: int) -> list[str]:
    """Greedy (or sampled) replies of `model` to every row, in row order, through the generation
    library's vLLM backend; prompts are rendered and tokenized as training rendered them."""
    tokenizer = AutoTokenizer.from_pretrained(model)
    prompts = [prompt_ids(tokenizer, r["system_prompt"], r["question"]) for r in rows]
    room = cfg.max_model_len - cfg.max_new_tokens
    too_long = [r["id"] for r, p in zip(rows, prompts, strict=True) if len(p) > room]
    if too_long:
        raise EvalError(
            f"{model}: {len(too_long)} prompt(s) do not fit max_model_len={cfg.max_model_len} minus "
            f"max_new_tokens={cfg.max_new_tokens}, e.g. row {too_long[0]}"
        )
    messages = [build_messages(r["system_prompt"], r["question"]) for r in rows]
    requests = [
        GenRequest(str(i), r["id"], m, cfg.max_new_tokens, seed, len(p), p)
        for i, (r, m, p) in enumerate(zip(rows, messages, prompts, strict=True))
    ]
    backend = VLLMBackend(eval_teacher(label, model, cfg, seed, len(rows)))
    replies: dict[str, str] = {}
    try:
        for result in tqdm(backend.generate(requests), total=len(requests), desc=f"eval {label}"):
            if isinstance(result, GenError):
                raise EvalError(f"{model}: row {result.id}: {result.detail}")
            replies[result.key] = result.response
    finally:
        backend.close()
        gc.collect()
    return [replies[r.key] for r in requests]


def score_rows(label: str, rows: list[dict[str, Any]], replies: list[str]) -> list[dict[str, Any]]:
    """One scored prediction row per prompt."""
    out = []
    for r, reply in zip(rows, replies, strict=True):
        correct, method = score_one(r["question"], r["reference"], reply, bool(r["has_options"]))
        out.append(
            {
                "id": r["id"],
                "model": label,
                "submix": r["submix"],
                "task_name": r["task_name"],
                "reference": r["reference"],
                "prediction": reply,
                "method": method,
                "correct": correct,
            }
        )
    return out


def markdown_table(results: dict[str, dict[str, Any]]) -> str:
    """Accuracy per submix and overall, one column per model, plus the change from the first model."""
    labels = list(results)
    submixes = sorted({s for r in results.values() for s in r["by_submix"]})
    head = ["submix", "n", *labels]
    if len(labels) > 1:
        head.append(f"Δ ({labels[-1]} − {labels[0]})")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]

    def row(name: str, cells: list[dict[str, Any] | None]) -> str:
        n = next((c["n"] for c in cells if c), 0)
        accs = [c["accuracy"] if c else None for c in cells]
        vals = [f"{a:.1%}" if a is not None else "–" for a in accs]
        if len(cells) > 1:
            first, last = accs[0], accs[-1]
            vals.append(f"{(last - first) * 100:+.1f} pt" if first is not None and last is not None else "–")
        return "| " + " | ".join([name, str(n), *vals]) + " |"

    for s in submixes:
        lines.append(row(s, [results[m]["by_submix"].get(s) for m in labels]))
    lines.append(row("**overall**", [results[m]["overall"] for m in labels]))
    return "\n".join(lines) + "\n"


def run_eval(cfg: EvalConfig, seed: int) -> tuple[dict[str, Any], str, pl.DataFrame]:
    """Generate and score every model; returns (metrics, markdown table, predictions)."""
    rows = load_heldout(cfg)
    logger.info("%d held-out prompts from %s (%s/%s)", len(rows), cfg.dataset, cfg.config, cfg.split)
    results: dict[str, dict[str, Any]] = {}
    predictions: list[dict[str, Any]] = []
    for label, model in cfg.models.items():
        replies = generate(label, model, rows, cfg, seed)
        scored = score_rows(label, rows, replies)
        predictions += scored
        results[label] = {"model": model, **accuracy_table(scored)}
        logger.info("%s (%s): overall accuracy %s", label, model, results[label]["overall"]["accuracy"])
    metrics = {
        "dataset": cfg.dataset,
        "config": cfg.config,
        "split": cfg.split,
        "revision": cfg.revision,
        "n": len(rows),
        "models": results,
    }
    frame = pl.DataFrame(predictions, schema={f.name: pl.Boolean if f.name == "correct" else pl.String
                                              for f in PREDICTIONS_SCHEMA})  # fmt: skip
    return metrics, markdown_table(results), frame.sort(["model", "id"])
