"""Typed contracts of the JSON files stages hand each other (see docs/CONTRACTS.md).

Producers build these models and write `model.dump()`; consumers read with `read_contract`, so a
field renamed on one side fails loudly on the other, and a test fixture built with the same model
cannot drift from the producer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, ValidationError, model_validator

from core.errors import InputError, validation_message
from core.io import read_document

C = TypeVar("C", bound="Contract")


class Contract(BaseModel):
    """Base of every contract: frozen, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def dump(self) -> dict[str, Any]:
        """The JSON-ready mapping a producer writes."""
        return self.model_dump(mode="json")


class Funnel(Contract):
    """One filtering stage's `funnel` block of `stats.json`: rows_in == rows_out + sum(removed)."""

    stage: str = Field(min_length=1)
    rows_in: NonNegativeInt
    rows_out: NonNegativeInt
    removed: dict[str, NonNegativeInt]

    @model_validator(mode="after")
    def _adds_up(self) -> Funnel:
        if self.rows_in != self.rows_out + self.removed_total:
            raise ValueError(
                f"funnel does not add up: rows_in {self.rows_in} != rows_out {self.rows_out}"
                f" + removed {self.removed_total}"
            )
        return self

    @property
    def removed_total(self) -> int:
        return sum(self.removed.values())


class TeacherTerms(Contract):
    """A teacher model's own terms of use, as declared in `license.teachers`."""

    license: str = Field(min_length=1, description="SPDX id or name of the model's license")
    outputs_may_train_models: bool = Field(description="the terms allow training models on its outputs")
    commercial_use: bool = Field(description="the terms allow commercial use of its outputs")
    url: str | None = None


class ReleaseLicense(Contract):
    """The release's license: one SPDX id, or `other` with the constituent licenses listed."""

    license: str = Field(min_length=1)
    licenses: list[str]
    use: str


class Attribution(Contract):
    """A source dataset whose license requires attribution, with the rows it contributes."""

    dataset: str
    name: str
    license: str
    url: str | None
    license_urls: list[str]
    rows: NonNegativeInt


class ShareAlike(Contract):
    """A share-alike source dataset in the release."""

    dataset: str
    license: str
    rows: NonNegativeInt


class LicenseSummary(Contract):
    """`license_summary.json`, written by the `license` stage and read by `release`."""

    registry: dict[str, Any]
    policy: dict[str, Any]
    rows: NonNegativeInt
    counts: dict[str, dict[str, NonNegativeInt]]
    attributions: list[Attribution]
    share_alike: list[ShareAlike]
    teachers: dict[str, TeacherTerms]
    release: ReleaseLicense


class TeacherRecord(Contract):
    """`data/traces/meta/<teacher>.json`: what generated a teacher's traces, written by `traces`."""

    teacher: str
    model: str
    revision: str | None
    requested_revision: str | None
    backend: str
    vllm_version: str | None
    sampling: dict[str, Any]
    max_model_len: int
    fraction: float
    prompt_tokens_total: NonNegativeInt
    completion_tokens_total: NonNegativeInt
    price: dict[str, float] | None = Field(
        None, description="per million tokens: input, output, batch_input, batch_output (null: not priced)"
    )
    priced_at: str | None = Field(None, description="online or batch: the price its answers were billed at")
    served_models: list[str] | None = Field(
        None,
        description="an API teacher: the model names the server reported for the released rows, sorted "
        "(a dated snapshot, or an alias allowed by allow_model_alias); null: not an API teacher",
    )


class JudgeRecord(Contract):
    """The judge of open answers in `data/verify/stats.json` (`answer_checks.judge`), written by `verify`."""

    model: str
    revision: str
    requested_revision: str | None
    backend: str
    vllm_version: str | None
    sampling: dict[str, Any]
    max_model_len: int
    prompt_file: str
    prompt_sha256: str


class CheckCounts(Contract):
    """Verdicts of one (teacher, submix, answer kind) over the traces `verify` received."""

    teacher: str
    submix: str
    answer_kind: str
    correct: NonNegativeInt
    wrong: NonNegativeInt
    unverifiable: NonNegativeInt


class JudgeCounts(Contract):
    """What became of the rows sent to the judge: a verdict, or why none (left unverifiable)."""

    rows: NonNegativeInt
    correct: NonNegativeInt
    wrong: NonNegativeInt
    unparseable: NonNegativeInt
    prompt_too_long: NonNegativeInt
    request_error: NonNegativeInt


class AnswerChecks(Contract):
    """`answer_checks` of `data/verify/stats.json`: the policy, the verdict counts and the judge."""

    drop_wrong: bool
    drop_unverifiable: bool
    counts: list[CheckCounts]
    judge: JudgeRecord | None
    judged: JudgeCounts | None


def parse_contract(model: type[C], data: Any, source: str) -> C:
    """Validate `data` into `model`; errors name `source` and the dotted key."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"{source}: {validation_message(exc.errors())}") from None


def read_contract(model: type[C], path: str | Path) -> C:
    """Read a JSON file into `model`; errors name the file and key."""
    return parse_contract(model, read_document(path), str(path))
