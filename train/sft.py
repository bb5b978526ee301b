"""Progressive supervised fine-tuning of the student on the release (library of stage `train`).

The release is read only through `datasets.load_dataset(release, <teacher config>, revision=...)`,
the call a user makes. Phases run in the order params give (Orca: the cheaper teacher's traces
first, then the stronger one's), each with its own epochs and learning rate, on the same model.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from datasets import load_dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainerCallback, TrainingArguments

from core.errors import PipelineError
from core.io import atomic_path
from core.models import save_tokenizer
from train.config import PhaseConfig, TrainConfig
from train.format import Example, FormatError, span_labels, token_columns, tokenize_dataset
from train.packing import PackedCollator, PackedDataset, Packs, pack_plan, packing_isolated

logger = logging.getLogger(__name__)

LOSS_FIELDS = ["step", "phase", "teacher", "epoch", "loss", "learning_rate"]


class TrainError(PipelineError):
    """The training run cannot start or finish (bad release, model, or context)."""


class LossRecorder(TrainerCallback):
    """Collects the per-step training loss of every phase, on one global step axis."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.offset = 0
        self.phase = 0
        self.teacher = ""

    def start_phase(self, index: int, teacher: str) -> None:
        self.offset = self.rows[-1]["step"] if self.rows else 0
        self.phase, self.teacher = index, teacher

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kw: Any
    ) -> None:
        if logs and "loss" in logs:
            self.rows.append(
                {
                    "step": self.offset + state.global_step,
                    "phase": self.phase,
                    "teacher": self.teacher,
                    "epoch": round(float(logs.get("epoch", state.epoch or 0.0)), 4),
                    "loss": float(logs["loss"]),
                    "learning_rate": float(logs.get("learning_rate", 0.0)),
                }
            )


def load_release(cfg: TrainConfig, phase: PhaseConfig) -> Any:
    """The phase's rows as a `datasets.Dataset`, loaded with `load_dataset` exactly as a user would."""
    kwargs: dict[str, Any] = {"split": "train"}
    if cfg.revision:
        kwargs["revision"] = cfg.revision
    try:
        ds = load_dataset(cfg.release, phase.teacher, **kwargs)
    except ValueError as exc:
        raise TrainError(f"release {cfg.release}: cannot load config '{phase.teacher}': {exc}") from exc
    missing = [c for c in ("id", "system_prompt", "question", "response") if c not in ds.column_names]
    if missing:
        raise TrainError(f"release {cfg.release}, config '{phase.teacher}': missing columns {missing}")
    if phase.max_rows is not None:
        ds = ds.select(range(min(phase.max_rows, len(ds))))
    # the Parquet-to-Arrow conversion leaves freed buffers in Arrow's pool: give them back before
    # `num_proc` workers fork from this process and each carry its pages
    pa.default_memory_pool().release_unused()
    return ds


def load_student(cfg: TrainConfig) -> tuple[Any, Any]:
    """Tokenizer and model of the base student, checked against `max_length`."""
    tokenizer = AutoTokenizer.from_pretrained(cfg.base_model)
    if tokenizer.chat_template is None:
        raise TrainError(f"{cfg.base_model}: the tokenizer has no chat template")
    kwargs: dict[str, Any] = {"dtype": torch.float32}
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    model = AutoModelForCausalLM.from_pretrained(cfg.base_model, **kwargs)
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and cfg.max_length > limit:
        raise TrainError(
            f"train.max_length={cfg.max_length} exceeds {cfg.base_model}'s context of {limit} tokens"
        )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model


def training_args(cfg: TrainConfig, phase: PhaseConfig, seed: int, work_dir: Path) -> TrainingArguments:
    """TrainingArguments of one phase; bf16/gradient checkpointing only as params ask."""
    return TrainingArguments(
        output_dir=str(work_dir),
        num_train_epochs=phase.epochs,
        learning_rate=phase.learning_rate,
        per_device_train_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        bf16=cfg.bf16,
        gradient_checkpointing=cfg.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if cfg.gradient_checkpointing else None,
        logging_steps=cfg.logging_steps,
        save_strategy="no",
        report_to="none",
        seed=seed,
        data_seed=seed,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
    )


def train_progressive(
    cfg: TrainConfig, seed: int, out_dir: Path
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """Run every phase in order on one model; save it to `out_dir`. Returns (metrics, loss rows,
    run record of wall times)."""
    tokenizer, model = load_student(cfg)
    phase_rows = []
    for phase in cfg.phases:  # load and format everything first: bad data fails before training
        try:
            examples, stats = tokenize_dataset(
                load_release(cfg, phase), tokenizer, max_length=cfg.max_length, overlong=cfg.overlong,
                num_proc=cfg.num_proc,
            )  # fmt: skip
        except FormatError as exc:
            raise TrainError(f"release {cfg.release}, config '{phase.teacher}': {exc}") from exc
        if stats.examples == 0:
            raise TrainError(f"release {cfg.release}, config '{phase.teacher}': no trainable rows")
        phase_rows.append((phase, examples, stats))
    isolated = None
    flatten = cfg.packing and "flash" in str(model.config._attn_implementation)
    if cfg.packing:
        probe = probe_examples(phase_rows[0][1], 3)
        isolated = packing_isolated(model, probe, flatten=flatten) if len(probe) >= 2 else None
        if isolated is False:
            raise TrainError(
                f"{cfg.base_model} ({model.config._attn_implementation} attention) lets packed examples "
                "attend to each other; set train.packing: false or use an attention implementation that "
                "reads restarting position_ids (eager, sdpa, flex, flash_attention_2)"
            )
    collator = PackedCollator(tokenizer.pad_token_id, packed=cfg.packing, flatten=flatten)
    recorder = LossRecorder()
    phases_out = []
    timings: list[dict[str, Any]] = []
    work = tempfile.TemporaryDirectory(
        prefix=".train-", dir=out_dir.parent if out_dir.parent.exists() else None
    )
    for i, (phase, examples, stats) in enumerate(phase_rows, start=1):
        packs, n_tokens, n_labels = plan_phase(examples, cfg)
        dataset = PackedDataset(examples.select_columns(["input_ids", "label_start", "label_end"]), packs)
        logger.info(
            "phase %d (%s): %d examples in %d sequences, %d tokens (%d labelled), %d epochs at lr %g",
            i, phase.teacher, stats.examples, len(packs), n_tokens, n_labels,
            phase.epochs, phase.learning_rate,
        )  # fmt: skip
        recorder.start_phase(i, phase.teacher)
        trainer = Trainer(
            model=model,
            args=training_args(cfg, phase, seed + i, Path(work.name)),
            train_dataset=dataset,
            data_collator=collator,
            callbacks=[recorder],
        )
        started = time.perf_counter()
        result = trainer.train()
        runtime = time.perf_counter() - started
        model = trainer.model
        losses = [r["loss"] for r in recorder.rows if r["phase"] == i]
        tokens = int(n_tokens * phase.epochs)
        phases_out.append(
            {
                "index": i,
                "teacher": phase.teacher,
                "epochs": phase.epochs,
                "learning_rate": phase.learning_rate,
                **stats.as_dict(),
                "sequences": len(packs),
                "steps": int(result.global_step),
                "train_loss": float(result.training_loss),
                "first_loss": losses[0] if losses else math.nan,
                "last_loss": losses[-1] if losses else math.nan,
                "tokens": tokens,
                "label_tokens": int(n_labels * phase.epochs),
            }
        )
        timings.append({"teacher": phase.teacher, "runtime_s": round(runtime, 3), "tokens": tokens})
    work.cleanup()
    model.config.use_cache = True
    save_student(trainer, tokenizer, out_dir)
    total_tokens = sum(p["tokens"] for p in phases_out)
    metrics = {
        "base_model": cfg.base_model,
        "release": cfg.release,
        "revision": cfg.revision,
        "phase_order": [p["teacher"] for p in phases_out],
        "phases": phases_out,
        "packing": cfg.packing,
        "packing_isolated": isolated,
        "max_length": cfg.max_length,
        "tokens": total_tokens,
        "final_loss": phases_out[-1]["last_loss"],
    }
    return metrics, recorder.rows, run_record(timings)


def plan_phase(examples: Any, cfg: TrainConfig) -> tuple[Packs, int, int]:
    """(the packing plan, tokens, labelled tokens) of a phase's tokenized rows, from arrays."""
    lengths, labels = token_columns(examples)
    packs = pack_plan(lengths, cfg.max_length) if cfg.packing else Packs.singles(lengths)
    return packs, int(lengths.sum()), int(labels.sum())


def probe_examples(examples: Any, n: int) -> list[Example]:
    """The first `n` kept rows of a tokenized phase, as examples (for `packing_isolated`)."""
    lengths, _ = token_columns(examples)
    rows = examples.select(np.flatnonzero(lengths > 0)[:n].tolist())
    return [
        Example(r["id"], list(r["input_ids"]), span_labels(r["input_ids"], r["label_start"], r["label_end"]))
        for r in rows
    ]


def run_record(timings: list[dict[str, Any]]) -> dict[str, Any]:
    """run.json: each phase's wall time and tokens/s (this run's, never in the metrics DVC locks)."""
    for t in timings:
        t["tokens_per_s"] = round(t["tokens"] / t["runtime_s"], 1) if t["runtime_s"] > 0 else None
    total = sum(t["runtime_s"] for t in timings)
    tokens = sum(t["tokens"] for t in timings)
    return {
        "phases": timings,
        "runtime_s": round(total, 3),
        "tokens_per_s": round(tokens / total, 1) if total else None,
    }


def save_student(trainer: Trainer, tokenizer: Any, out_dir: Path) -> None:
    """Save the trained model and tokenizer to `out_dir` atomically.

    `Trainer.save_model` gathers a full state dict under FSDP; it runs on every rank, rank 0 writes.
    """
    tmp = out_dir.parent / f".{out_dir.name}.saving"
    main_rank = trainer.is_world_process_zero()
    if main_rank:
        shutil.rmtree(tmp, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    trainer.save_model(str(tmp))
    if main_rank:
        save_tokenizer(tokenizer, tmp)  # without loading options such as local_files_only
        for junk in ("training_args.bin",):
            (tmp / junk).unlink(missing_ok=True)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    trainer.accelerator.wait_for_everyone()


def write_loss_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """The per-step loss curve (DVC plot)."""
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=LOSS_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
