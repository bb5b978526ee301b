"""Arrow schemas of the tables the stages exchange (see docs/CONTRACTS.md)."""

from __future__ import annotations

import pyarrow as pa

# Every stage's `removed.parquet` starts with these columns; stages append their own context.
REMOVED_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string()),
    ]
)

SUBMIXES: tuple[str, ...] = ("cot", "niv2", "t0", "flan2021", "dialog")
TEMPLATE_TYPES: tuple[str, ...] = ("zs_opt", "zs_noopt", "fs_opt", "fs_noopt")

PROMPT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("submix", pa.string(), nullable=False),
        pa.field("task_name", pa.string(), nullable=False),
        pa.field("template_type", pa.string(), nullable=False),
        pa.field("has_options", pa.bool_(), nullable=False),
        pa.field("system_prompt_id", pa.int32(), nullable=False),
        pa.field("system_prompt", pa.string(), nullable=False),
        pa.field("question", pa.string(), nullable=False),
        pa.field("reference", pa.string(), nullable=False),
    ]
)

# Appended by the `license` stage (see builders/licenses/).
LICENSE_FIELDS: list[pa.Field] = [
    pa.field("source_dataset", pa.string(), nullable=False),
    pa.field("license", pa.string(), nullable=False),
    pa.field("license_use", pa.string(), nullable=False),
    pa.field("attribution_required", pa.bool_(), nullable=False),
    pa.field("share_alike", pa.bool_(), nullable=False),
    pa.field("license_resolution", pa.string(), nullable=False),
]

# Appended by the `traces` stage to the prompt columns it receives.
TRACE_FIELDS: list[pa.Field] = [
    pa.field("teacher", pa.string(), nullable=False),
    pa.field("teacher_model", pa.string(), nullable=False),
    pa.field("response", pa.string(), nullable=False),
    pa.field("finish_reason", pa.string(), nullable=False),
    pa.field("prompt_tokens", pa.int32(), nullable=False),
    pa.field("completion_tokens", pa.int32(), nullable=False),
]
