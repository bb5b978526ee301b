"""Typed configs of the `train:` and `eval:` sections of params.yaml."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from core.config import StageConfig, unique_by


class PhaseConfig(StageConfig):
    """One phase of progressive training: the release config (teacher) it reads, epochs and LR."""

    teacher: str = Field(min_length=1, description="release config name, one per teacher")
    epochs: float = Field(gt=0)
    learning_rate: float = Field(gt=0)
    max_rows: int | None = Field(None, ge=1, description="use only the first N rows (demo, smoke runs)")


class TrainConfig(StageConfig):
    """The `train:` section."""

    release: str = Field(min_length=1, description="release folder or Hub dataset repo id")
    revision: str | None = Field(None, description="Hub tag/commit of the release (ignored for a folder)")
    base_model: str = Field(min_length=1, description="student model folder or Hub model id")
    phases: list[PhaseConfig] = Field(min_length=1, description="in training order: cheaper teacher first")
    max_length: int = Field(2048, ge=16)
    overlong: Literal["drop", "truncate"] = "drop"
    packing: bool = True
    per_device_batch_size: int = Field(4, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    lr_scheduler: Literal["constant", "linear", "cosine", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    max_grad_norm: float = Field(1.0, gt=0.0)
    bf16: bool = False
    gradient_checkpointing: bool = False
    attn_implementation: str | None = Field(None, description="sdpa, eager, flash_attention_2, ...")
    logging_steps: int = Field(1, ge=1)
    num_proc: int | None = Field(None, ge=1, description="processes for tokenizing the release")

    @field_validator("phases")
    @classmethod
    def _unique_teachers(cls, phases: list[PhaseConfig]) -> list[PhaseConfig]:
        return unique_by(phases, lambda p: p.teacher, "teacher(s) listed in more than one phase")


class EvalConfig(StageConfig):
    """The `eval:` section."""

    dataset: str = Field(min_length=1, description="release folder or Hub dataset repo id")
    config: str = "heldout"
    split: str = "test"
    revision: str | None = None
    models: dict[str, str] = Field(
        min_length=1, description="label -> model folder or Hub id, in table order"
    )
    max_rows: int | None = Field(None, ge=1)
    max_new_tokens: int = Field(128, ge=1)
    temperature: float = Field(0.0, ge=0.0)
    max_model_len: int = Field(2048, ge=16)
    dtype: str = "auto"
    gpu_memory_utilization: float = Field(0.85, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _labels(self) -> EvalConfig:
        bad = [k for k in self.models if not k or not k.replace("_", "").replace("-", "").isalnum()]
        if bad:
            raise ValueError(f"model labels must be alphanumeric (with - or _): {bad}")
        return self
