"""Arrow schemas of the tables the stages exchange (see docs/CONTRACTS.md)."""

from __future__ import annotations

import pyarrow as pa

TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "bool": pa.bool_(),
    "int32": pa.int32(),
    "float64": pa.float64(),
}


def fields(spec: str) -> list[pa.Field]:
    """Fields from a compact spec: whitespace-separated `name[?][:type]`, in column order.

    The type is one of `TYPES` (default string); `?` marks a nullable column (default not null).
    """
    out = []
    for item in spec.split():
        name, _, type_name = item.partition(":")
        out.append(pa.field(name.rstrip("?"), TYPES[type_name or "string"], nullable=name.endswith("?")))
    return out


# Every stage's `removed.parquet` starts with these columns; stages append their own context.
REMOVED_SCHEMA = pa.schema(fields("id? stage reason detail?"))

SUBMIXES: tuple[str, ...] = ("cot", "niv2", "t0", "flan2021", "dialog")
TEMPLATE_TYPES: tuple[str, ...] = ("zs_opt", "zs_noopt", "fs_opt", "fs_noopt")

PROMPT_SCHEMA = pa.schema(
    fields(
        "id submix task_name template_type has_options:bool system_prompt_id:int32"
        " system_prompt question reference"
    )
)

# Appended by the `license` stage (see builders/license/).
LICENSE_FIELDS = fields(
    "source_dataset license license_use attribution_required:bool share_alike:bool license_resolution"
)

# Appended by the `traces` stage to the prompt columns it receives.
TRACE_FIELDS = fields(
    "teacher teacher_model response finish_reason prompt_tokens:int32 completion_tokens:int32"
)
# Columns of the trace tables written without a dictionary (long, mostly distinct texts).
LONG_TEXT = ("question", "response", "reference")

# Appended by the `verify` stage to the trace columns: the answer kind (multiple_choice, closed,
# open), the verdict (correct, wrong, unverifiable) and the final answer extracted (null if none).
VERIFY_FIELDS = fields("answer_kind answer_check extracted_answer?")
