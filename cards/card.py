"""The dataset card: `DatasetCardData` metadata plus a Markdown body rendered from a Jinja template."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl
from huggingface_hub import DatasetCard, DatasetCardData

from cards.checks import accuracy_rows, checks_summary, judge_text, policy_text
from cards.config import ReleaseConfig
from cards.funnel import funnel_table
from cards.hub import PublishConfig
from cards.inputs import ReleaseInputError, ReleaseInputs
from cards.shards import ConfigShards
from core.contracts import LicenseSummary, ReleaseLicense

TEMPLATE = Path(__file__).with_name("templates") / "card.md.jinja"
FUNNEL_PNG = "funnel.png"  # the funnel chart, beside the card
SIZE_BOUNDS = [
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
]


def size_category(n: int) -> str:
    """The Hub's size category for `n` examples."""
    for bound, label in SIZE_BOUNDS:
        if n < bound:
            return label
    return "n>100M"


def release_license(value: ReleaseLicense) -> tuple[str, list[str]]:
    """(Hub license id, constituent licenses) of the release: one SPDX id, or `other` when mixed."""
    ids = sorted({i.strip().lower() for i in [value.license, *value.licenses] if i.strip()} - {"other"})
    if value.license.lower() != "other":
        ids = [value.license.strip().lower()]
    if not ids:
        raise ReleaseInputError("license_summary.release: no license given")
    return (ids[0] if len(ids) == 1 else "other"), ids


def build_card_data(
    inputs: ReleaseInputs, shards: list[ConfigShards], settings: ReleaseConfig
) -> DatasetCardData:
    """The card's YAML metadata, built with `DatasetCardData`."""
    lic, lic_list = release_license(inputs.license_summary.release)
    extra: dict[str, Any] = {}
    if lic == "other":
        extra["license_name"] = "mixed"
        extra["license_details"] = "Mixed licenses of the source datasets: " + ", ".join(lic_list)
    configs = []
    for s in shards:
        entry: dict[str, Any] = {
            "config_name": s.config_name,
            "data_files": [{"split": s.split, "path": s.data_glob}],
        }
        if s.config_name == "default":
            entry["default"] = True
        configs.append(entry)
    dataset_info = [
        {
            "config_name": s.config_name,
            "features": s.features,
            "splits": [{"name": s.split, "num_bytes": s.num_bytes, "num_examples": s.num_examples}],
            "download_size": s.download_size,
            "dataset_size": s.num_bytes,
        }
        for s in shards
    ]
    return DatasetCardData(
        language=list(settings.language),
        license=lic,
        annotations_creators=["machine-generated"],
        language_creators=["machine-generated"],
        size_categories=[size_category(inputs.traces.rows)],
        source_datasets=list(settings.source_datasets),
        task_categories=list(settings.task_categories),
        pretty_name=settings.pretty_name,
        tags=list(settings.tags),
        configs=configs,
        dataset_info=dataset_info,
        **extra,
    )


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, Mapping | list):
        return "`" + json.dumps(value, sort_keys=True) + "`"
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def json_block(obj: Any) -> str:
    """Pretty JSON in a fenced block (every number of a stats file, verbatim)."""
    return "```json\n" + json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n```"


def recipe_tables(inputs: ReleaseInputs) -> tuple[str, str]:
    """(submix budgets vs counts, system message distribution) as Markdown tables."""
    pstats = inputs.stats["prompts"]
    budgets = pstats.get("budgets") or {}
    built = pstats.get("rows_per_submix") or {}
    shortfall = pstats.get("shortfall") or {}
    tasks = pstats.get("tasks_per_submix") or {}
    mix = inputs.traces.prompt_mix  # distinct prompts per (system_prompt_id, submix), sorted
    released = dict(mix.group_by("submix").agg(pl.col("len").sum()).iter_rows())
    submixes = sorted(set(budgets) | set(built) | set(released))
    submix_rows = [
        [
            s,
            budgets.get(s, "n/a"),
            built.get(s, "n/a"),
            shortfall.get(s, "n/a"),
            tasks.get(s, "n/a"),
            released.get(s, 0),
        ]
        for s in submixes
    ]
    submix_md = table(
        ["submix", "budget", "prompts built", "shortfall", "tasks", "prompts released"], submix_rows
    )
    counts = mix.group_by("system_prompt_id").agg(pl.col("len").sum()).sort("system_prompt_id")
    total = inputs.traces.prompts
    per_submix: dict[Any, list[str]] = {}
    for sid, submix, n in mix.iter_rows():
        per_submix.setdefault(sid, []).append(f"{submix}: {n:,}")
    sys_rows = [
        [sid, n, f"{100 * n / total:.1f}%", ", ".join(per_submix[sid])] for sid, n in counts.iter_rows()
    ]
    sys_md = table(["system message id", "prompts", "share", "per submix"], sys_rows)
    return submix_md, sys_md


def teacher_table(inputs: ReleaseInputs) -> str:
    """Teachers with model, revision, backend, sampling params and rows."""
    rows_per = inputs.traces.rows_per_teacher
    rows = []
    for name, meta in inputs.teacher_meta.items():
        rows.append(
            [
                name,
                meta.model,
                meta.revision or "not recorded",
                meta.backend,
                meta.vllm_version or "not recorded",
                meta.sampling,
                rows_per.get(name, 0),
            ]
        )
    return table(["teacher", "model", "revision", "backend", "vLLM", "sampling", "rows"], rows)


def ledger_table(inputs: ReleaseInputs) -> str:
    """Per teacher: tokens of its released rows (by usage), its price and what they cost online and
    through a Batch API."""
    rows = []
    for name, meta in inputs.teacher_meta.items():
        prompt, completion = inputs.traces.tokens_per_teacher.get(name, (0, 0))
        p = meta.price
        if p is None:
            priced = ["not priced", "-", "-", "-"]
        else:
            online = (prompt * p["input"] + completion * p["output"]) / 1e6
            batch = (prompt * p["batch_input"] + completion * p["batch_output"]) / 1e6
            price = f"{p['input']:g} / {p['output']:g} (batch {p['batch_input']:g} / {p['batch_output']:g})"
            priced = [price, f"{online:,.4f}", f"{batch:,.4f}", meta.priced_at or "-"]
        rows.append(
            [name, inputs.traces.rows_per_teacher.get(name, 0), f"{prompt:,}", f"{completion:,}", *priced]
        )
    header = ["teacher", "rows", "input tokens", "output tokens", "price in / out per 1M tokens",
              "cost online", "cost batch", "billed at"]  # fmt: skip
    return table(header, rows)


def _stats_md(key: str, value: Any) -> str:
    """A mapping of scalars as a table; a mapping of such mappings as one table each; else JSON."""
    if (
        isinstance(value, Mapping)
        and value
        and all(not isinstance(v, Mapping | list) for v in value.values())
    ):
        return f"**{key}**\n\n" + table(["value", "count"], [[k, v] for k, v in sorted(value.items())])
    if isinstance(value, Mapping) and value and all(isinstance(v, Mapping) for v in value.values()):
        return "\n\n".join(_stats_md(f"{key}: {k}", v) for k, v in sorted(value.items()))
    return f"**{key}**\n\n" + json_block(value)


def license_tables(summary: LicenseSummary) -> tuple[str, str]:
    """(licenses, attributions owed) as Markdown from the license summary."""
    data = summary.dump()
    skip = {"attributions", "release", "teachers"}
    parts = [_stats_md(k, v) for k, v in sorted(data.items()) if k not in skip]
    attributions = summary.attributions
    if attributions:
        rows = [[a.dataset, a.license, a.url or ""] for a in attributions]
        attr = table(["dataset", "license", "url"], rows)
    else:
        attr = "No attribution is owed."
    return "\n\n".join(parts), attr


def other_stats(stats: Mapping[str, Any]) -> str:
    """A stage's stats beyond its funnel block, as Markdown."""
    rest = {k: v for k, v in stats.items() if k != "funnel"}
    return json_block(rest) if rest else "No further figures."


def render_card(
    inputs: ReleaseInputs, shards: list[ConfigShards], release: ReleaseConfig, publish: PublishConfig
) -> DatasetCard:
    """The whole card: metadata from `build_card_data`, body from the Jinja template (which reads
    the `release` and `publish` params as they are)."""
    card_data = build_card_data(inputs, shards, release)
    lic, lic_list = release_license(inputs.license_summary.release)
    submix_md, sys_md = recipe_tables(inputs)
    license_md, attribution_md = license_tables(inputs.license_summary)
    terms = {name: t.dump() for name, t in inputs.license_summary.teachers.items()}
    revision = f"v{publish.version}"
    return DatasetCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        release=release,
        publish=publish,
        funnel_png=FUNNEL_PNG,
        revision=revision,
        license_id=lic,
        license_list=lic_list,
        shards=shards,
        teachers=inputs.teachers,
        total_rows=inputs.traces.rows,
        total_prompts=inputs.traces.prompts,
        heldout_rows=inputs.heldout.height,
        submix_table=submix_md,
        system_table=sys_md,
        teacher_table=teacher_table(inputs),
        ledger_table=ledger_table(inputs),
        teacher_meta={k: json_block(v.dump()) for k, v in inputs.teacher_meta.items()},
        funnel_table=funnel_table(inputs.funnel),
        license_table=license_md,
        attribution_table=attribution_md,
        teacher_terms=json_block(terms) if terms else "No teacher terms were declared (`license.teachers`).",
        dedup_stats=other_stats(inputs.stats["dedup"]),
        checks=checks_summary(inputs.answer_checks),
        accuracy_by_submix=table(*accuracy_rows(inputs.answer_checks, "submix")),
        accuracy_by_kind=table(*accuracy_rows(inputs.answer_checks, "answer_kind")),
        judge_text=judge_text(inputs.answer_checks),
        policy_text=policy_text(inputs.answer_checks),
        stage_stats={stage: other_stats(st) for stage, st in inputs.stats.items()},
        inputs_table=table(["input", "md5"], [[f"`{k}`", f"`{v}`"] for k, v in inputs.input_md5.items()]),
        inputs_sha256=hashlib.sha256(json.dumps(inputs.input_md5, sort_keys=True).encode()).hexdigest(),
        params_sha256=inputs.params_sha256,
        params_excerpt=inputs.params_excerpt,
    )
