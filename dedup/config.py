"""The `dedup:` section of params.yaml."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, model_validator

from core.config import StageConfig
from dedup.content import TemplateSettings
from dedup.lsh import lsh_params


class EvalSetSpec(StageConfig):
    """One evaluation set to keep out of the training prompts: a local file or a Hub dataset."""

    name: str = Field(min_length=1)
    path: str | None = None  # local .parquet, .jsonl or .json file
    json_field: str | None = None  # for a .json file: the key holding the list of records
    hub_id: str | None = None  # Hub dataset id, loaded with datasets.load_dataset
    hub_config: str | None = None
    split: str = "test"
    revision: str | None = None
    text_column: str = Field(min_length=1)

    @model_validator(mode="after")
    def _one_source(self) -> EvalSetSpec:
        if (self.path is None) == (self.hub_id is None):
            raise ValueError(f"eval set '{self.name}': give exactly one of `path` or `hub_id`")
        return self


class DedupConfig(StageConfig):
    """Exact + MinHash near-duplicate removal and decontamination."""

    # Near duplicates are judged on a prompt's own content (see dedup/content.py): its words once
    # n-grams shared by many prompts of its task (the template) are set aside.
    ngram: int = Field(3, ge=1, le=64, description="words per content shingle")
    num_perm: int = Field(128, ge=2, le=1024)
    threshold: float = Field(0.5, gt=0.0, lt=1.0, description="content Jaccard for near duplicates")
    lsh_threshold: float | None = Field(
        0.4, gt=0.0, lt=1.0, description="content Jaccard the LSH index is tuned for (null: threshold)"
    )
    bands: int | None = Field(None, ge=1)
    rows: int | None = Field(None, ge=1)
    scheme: Literal["affine32", "legacy"] = "affine32"  # datasketch permutation scheme
    # datasketch's optimal bands x rows for the threshold, weighting false negatives by this
    # (false positives by 1 - it); every candidate pair is then verified on its shingle sets
    false_negative_weight: float = Field(0.9, gt=0.0, lt=1.0)
    template_ngram: int = Field(4, ge=2, le=64, description="words per template n-gram")
    template_share: float = Field(0.02, gt=0.0, le=1.0, description="share of a task's prompts")
    template_min_prompts: int = Field(4, ge=2, description="... and at least this many prompts")
    template_sample: int = Field(2000, ge=10, description="distinct prompts per task counted")
    template_edit_words: int = Field(2, ge=0, description="a run this short inside a template is an edit")
    template_shared_tasks: int = Field(
        2, ge=1, description="a span that is template in this many tasks is template in every task"
    )
    # a near duplicate lacks at most this many of the other's template words (or this share of its
    # words), on one side only; more, or on both sides, is the same content under another template
    template_diff_words: int = Field(3, ge=0, description="template words a light edit may drop")
    template_diff_share: float = Field(0.06, ge=0.0, le=1.0, description="... or this share of the words")
    # the same content under another template: "keep" both, or "merge" them as duplicates
    template_variants: Literal["keep", "merge"] = "keep"
    min_content_words: int = Field(
        4, ge=1, description="own-content words a prompt needs to be judged for near duplicates"
    )
    # prompts whose numbers differ ask different things: "distinct" keeps them apart, "merge"
    # judges them on their words alone
    numbers: Literal["distinct", "merge"] = "distinct"
    chunk_size: int = Field(4096, ge=1, description="max documents per chunk")
    chunk_bytes: int = Field(1 << 20, ge=1024, description="about this much text per chunk")
    workers: int | None = Field(None, ge=1, description="threads; null = all cores")
    eval_sets: list[EvalSetSpec] = Field(default_factory=list)
    decontam_ngram: int = Field(8, ge=1, le=64, description="words per n-gram for the overlap test")
    decontam_overlap: float = Field(
        0.5, gt=0.0, le=1.0, description="share of an eval item's n-grams found in a prompt"
    )
    decontam_threshold: float | None = Field(
        0.8, gt=0.0, lt=1.0, description="MinHash Jaccard with an eval item; null disables"
    )
    previous_release: str | None = None  # Parquet with `id` and `question` of an earlier release

    @model_validator(mode="after")
    def _check(self) -> DedupConfig:
        self.lsh()
        if self.template_share * self.template_sample > 255 or self.template_min_prompts > 255:
            raise ValueError(
                "template thresholds are counted in one byte: template_share x template_sample and "
                "template_min_prompts must be <= 255"
            )
        names = [e.name for e in self.eval_sets]
        if len(set(names)) != len(names):
            raise ValueError(f"eval set names must be unique: {names}")
        return self

    def lsh(self) -> tuple[int, int]:
        """(bands, rows) for the near-duplicate index: tuned to `lsh_threshold` (below
        `threshold`, so pairs just above the threshold are rarely missed), unless set."""
        target = self.threshold if self.lsh_threshold is None else self.lsh_threshold
        return lsh_params(self.num_perm, target, self.bands, self.rows, self.false_negative_weight)

    def template_settings(self) -> TemplateSettings:
        """What makes an n-gram template and a shingle content."""
        return TemplateSettings(
            self.ngram,
            self.template_ngram,
            self.template_share,
            self.template_min_prompts,
            self.template_edit_words,
            self.template_shared_tasks,
        )

    @property
    def n_workers(self) -> int:
        """Threads to use."""
        return self.workers or os.cpu_count() or 1
