"""Generation runs: every (prompt, teacher) pair becomes a trace row or a recorded removal.

Prompts not yet in the generation cache go to the teacher; completed generations are written to
cache shards as they arrive, so a killed run loses at most one shard's worth of work and a rerun
sends only what is missing. A run stopped by an exception (a whole-run failure of the backend, the
failure-rate guard, Ctrl-C) writes its finished answers first. A failed request is a `GenError`,
never cached, so a rerun sends it again; when more than `max_failure_rate` of a teacher's results
in a run fail (over at least `min_results_for_rate`), the run stops rather than releasing removals.
The `traces` stage (`builders/traces.py`) calls `run_traces`.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
from tqdm import tqdm

from builders.teachers.base import Backend, GenError, GenRequest, GenResult
from builders.teachers.cache import GenerationCache, cache_key
from builders.teachers.config import TeacherConfig, TracesConfig
from builders.teachers.filters import PROMPT_TOO_LONG, REQUEST_ERROR, response_problem
from builders.teachers.provenance import resolve_revision, vllm_version
from core.chat import build_messages
from core.contracts import Funnel, TeacherRecord
from core.errors import InputError, PipelineError
from core.io import write_json, write_parquet
from core.schema import REMOVED_SCHEMA, TRACE_FIELDS, fields

logger = logging.getLogger(__name__)

STAGE = "traces"
REQUIRED_COLUMNS = ("id", "system_prompt", "question")
REMOVED_TRACES_SCHEMA = pa.schema([*REMOVED_SCHEMA, *fields("teacher")])

BackendFactory = Callable[[TeacherConfig], Backend]


def _unit_hash(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "big")


def select_fraction(ids: pl.Series, fraction: float, seed: int) -> pl.Series:
    """Boolean mask: a stable, seeded `fraction` of `ids` (a row's choice ignores the other rows)."""
    if fraction >= 1.0:
        return pl.Series([True] * len(ids), dtype=pl.Boolean)
    return pl.Series([_unit_hash(seed, i) < fraction * 2**64 for i in ids.to_list()], dtype=pl.Boolean)


def request_seed(sampling_seed: int, prompt_id: str) -> int:
    """Per-request sampling seed: the same prompt gets the same seed whatever the batch."""
    return _unit_hash(sampling_seed, prompt_id) & 0x7FFFFFFF


def load_tokenizer(teacher: TeacherConfig) -> Any:
    """The teacher's tokenizer (for the context check) or None when it cannot be had locally."""
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(teacher.model, revision=teacher.revision)
    except Exception as exc:
        logger.warning(
            "teacher %s: no tokenizer for %s (%s); lengths unchecked", teacher.name, teacher.model, exc
        )
        return None


def count_prompt_tokens(tokenizer: Any, convs: list[list[dict[str, str]]]) -> list[int]:
    """Prompt tokens of each conversation through the chat template (as vLLM's chat encodes it)."""
    texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in convs]
    counts: list[int] = []
    for start in range(0, len(texts), 1024):
        enc = tokenizer(texts[start : start + 1024], add_special_tokens=False)["input_ids"]
        counts.extend(len(e) for e in enc)
    return counts


def make_backend(teacher: TeacherConfig, shard_size: int) -> Backend:
    """The backend named by `teacher.backend`."""
    if teacher.backend == "vllm":
        from builders.teachers.vllm_backend import VLLMBackend

        return VLLMBackend(teacher, batch_size=shard_size)
    from builders.teachers.openai_backend import OpenAIBackend

    return OpenAIBackend(teacher)


def check_failure_rate(teacher: str, cfg: TracesConfig, failed: int, results: int, last: str) -> None:
    """Stop the run when, over at least `min_results_for_rate` results, too many are request errors."""
    if results < cfg.min_results_for_rate or failed <= cfg.max_failure_rate * results:
        return
    raise PipelineError(
        f"teacher {teacher}: {failed} of {results} requests failed in this run "
        f"({failed / results:.0%} > traces.max_failure_rate {cfg.max_failure_rate:g}; last: {last}); "
        "finished answers are cached and a rerun sends only the rest: fix the server, "
        "or raise traces.max_failure_rate"
    )


def generate(
    backend: Backend,
    requests: list[GenRequest],
    teacher: TeacherConfig,
    cfg: TracesConfig,
    cache: GenerationCache,
    revision: str,
) -> tuple[dict[str, GenError], int, int]:
    """Send `requests`: (errors by key, prompt tokens, completion tokens) of this run.

    Answers go to the cache every `shard_size` and, whatever stops the run (a `PipelineError` from
    the backend or the failure-rate guard, Ctrl-C, a bug), before the exception propagates; the
    backend's generator is closed first, so nothing more is sent. When the failure-rate guard
    trips, the backend is stopped and requests already sent still come back and are cached.
    Errors are never cached.
    """
    buffer: list[GenResult] = []
    errors: dict[str, GenError] = {}
    n = failed = prompt_tokens = completion_tokens = 0
    last = ""
    stopped: PipelineError | None = None
    results = backend.generate(requests)
    bar = tqdm(total=len(requests), desc=f"traces {teacher.name}", unit="prompt")
    try:
        for r in results:
            if isinstance(r, GenError):
                errors[r.key] = r
                if r.reason == REQUEST_ERROR:
                    failed, last = failed + 1, r.detail
            else:
                buffer.append(r)
                prompt_tokens += r.prompt_tokens
                completion_tokens += r.completion_tokens
            n += 1
            bar.update(1)
            if len(buffer) >= cfg.shard_size:
                batch, buffer = buffer, []
                cache.write_shard(batch, teacher.model, revision)
            if stopped is None:
                try:
                    check_failure_rate(teacher.name, cfg, failed, n, last)
                except PipelineError as exc:
                    stopped = exc
                    backend.stop()  # send nothing more; what is on the wire still comes back
        if stopped is not None:
            raise stopped
        check_failure_rate(teacher.name, cfg, failed, n, last)  # the whole run, at its end
    finally:
        try:
            close = getattr(results, "close", None)
            if close is not None:
                close()  # on a stop: cancel what the backend has not sent yet
        finally:
            bar.close()
            if buffer:
                logger.info("teacher %s: caching %d finished answers", teacher.name, len(buffer))
                cache.write_shard(buffer, teacher.model, revision)
    return errors, prompt_tokens, completion_tokens


def run_teacher(
    prompts: pl.DataFrame,
    teacher: TeacherConfig,
    cfg: TracesConfig,
    cache: GenerationCache,
    seed: int,
    backend_factory: BackendFactory,
) -> tuple[pl.DataFrame, list[dict[str, str]], dict[str, Any], dict[str, Any], dict[str, Any]]:
    """One teacher over its prompts: (trace rows, removed rows, stats, meta, this run's record)."""
    selected = prompts.filter(select_fraction(prompts["id"], teacher.fraction, seed))
    revision = resolve_revision(teacher.model, teacher.revision)
    keys = [
        cache_key(i, s, q, teacher.model, revision, teacher.sampling)
        for i, s, q in zip(selected["id"], selected["system_prompt"], selected["question"], strict=True)
    ]
    selected = selected.with_columns(pl.Series("_key", keys, dtype=pl.String))
    cached_keys = set(cache.load(keys)["key"].to_list())
    todo = selected.filter(~pl.col("_key").is_in(list(cached_keys)))
    logger.info(
        "teacher %s: %d prompts selected, %d cached, %d to generate",
        teacher.name,
        selected.height,
        len(cached_keys),
        todo.height,
    )
    removed: list[dict[str, str]] = []
    requests: list[GenRequest] = []
    convs = [build_messages(s, q) for s, q in zip(todo["system_prompt"], todo["question"], strict=True)]
    tokenizer = load_tokenizer(teacher) if todo.height else None
    counts = count_prompt_tokens(tokenizer, convs) if tokenizer is not None else [0] * todo.height
    for pid, key, conv, n in zip(todo["id"], todo["_key"], convs, counts, strict=True):
        if tokenizer is not None and n + cfg.min_new_tokens > teacher.max_model_len:
            detail = f"{n} prompt tokens + {cfg.min_new_tokens} > max_model_len {teacher.max_model_len}"
            removed.append({"id": pid, "stage": STAGE, "reason": PROMPT_TOO_LONG, "detail": detail})
            continue
        max_tokens = teacher.sampling.max_tokens
        if tokenizer is not None:
            max_tokens = min(max_tokens, teacher.max_model_len - n)
        requests.append(GenRequest(key, pid, conv, max_tokens, request_seed(teacher.sampling.seed, pid)))

    run_prompt_tokens = run_completion_tokens = 0
    rate_ok = bool(requests)
    errors: dict[str, GenError] = {}
    start = time.perf_counter()
    if requests:
        backend = backend_factory(teacher)
        try:
            errors, run_prompt_tokens, run_completion_tokens = generate(
                backend, requests, teacher, cfg, cache, revision
            )
        finally:
            backend.close()
    wall = max(time.perf_counter() - start, 1e-9)

    fitting = selected.filter(~pl.col("id").is_in([r["id"] for r in removed]))
    results = cache.load(fitting["_key"].to_list())
    joined = fitting.join(
        results.select("key", "response", "finish_reason", "prompt_tokens", "completion_tokens"),
        left_on="_key",
        right_on="key",
        how="left",
    )
    for pid, key in zip(joined["id"], joined["_key"], strict=True):
        if key in errors:
            e = errors[key]
            removed.append({"id": pid, "stage": STAGE, "reason": e.reason, "detail": e.detail})
    missing = joined.filter(pl.col("response").is_null() & ~pl.col("_key").is_in(list(errors)))
    if missing.height:
        raise PipelineError(
            f"teacher {teacher.name}: {missing.height} prompts have no result (e.g. {missing['id'][0]})"
        )
    joined = joined.filter(pl.col("response").is_not_null())
    keep = []
    for pid, resp, fin in zip(joined["id"], joined["response"], joined["finish_reason"], strict=True):
        problem = response_problem(resp, fin, cfg)
        keep.append(problem is None)
        if problem is not None:
            removed.append({"id": pid, "stage": STAGE, "reason": problem[0], "detail": problem[1]})
    rows = joined.filter(pl.Series(keep, dtype=pl.Boolean)).drop("_key")
    rows = rows.with_columns(
        pl.lit(teacher.name).alias("teacher"),
        pl.lit(teacher.model).alias("teacher_model"),
    )
    for r in removed:
        r["teacher"] = teacher.name

    stats = {
        "prompts_selected": selected.height,
        "rows_out": rows.height,
        "removed": dict(sorted(Counter(r["reason"] for r in removed).items())),
    }
    meta = TeacherRecord(
        teacher=teacher.name,
        model=teacher.model,
        revision=revision,
        requested_revision=teacher.revision,
        backend=teacher.backend,
        vllm_version=vllm_version(),
        sampling=teacher.sampling.model_dump(mode="json"),
        max_model_len=teacher.max_model_len,
        fraction=teacher.fraction,
        prompt_tokens_total=int(results["prompt_tokens"].sum()) if results.height else 0,
        completion_tokens_total=int(results["completion_tokens"].sum()) if results.height else 0,
    ).dump()
    total = run_prompt_tokens + run_completion_tokens
    run = {  # this run only (how much was cached before it depends on earlier runs): run.json
        "cached_before_run": len(cached_keys),
        "sent": len(requests),
        "prompt_tokens": run_prompt_tokens,
        "completion_tokens": run_completion_tokens,
        "wall_time_s": round(wall, 3),
        "completion_tokens_per_s": round(run_completion_tokens / wall, 3) if rate_ok else None,
        "total_tokens_per_s": round(total / wall, 3) if rate_ok else None,
    }
    return rows, removed, stats, meta, run


def trace_schema(prompts: pl.DataFrame) -> pa.Schema:
    """The prompt table's columns (large strings as strings) followed by the trace columns."""
    columns = []
    for f in prompts.head(0).to_arrow().schema:
        t = pa.string() if pa.types.is_large_string(f.type) or pa.types.is_string_view(f.type) else f.type
        columns.append(pa.field(f.name, t))
    return pa.schema(columns + TRACE_FIELDS)


def check_prompts(prompts: pl.DataFrame, source: str) -> None:
    """Required columns present, ids unique and non-null."""
    missing = [c for c in REQUIRED_COLUMNS if c not in prompts.columns]
    if missing:
        raise InputError(f"{source}: missing columns {missing}")
    if prompts["id"].null_count() or prompts["id"].n_unique() != prompts.height:
        raise InputError(f"{source}: column 'id' has nulls or duplicates")
    for col in ("system_prompt", "question"):
        if prompts[col].null_count():
            raise InputError(f"{source}: column '{col}' has nulls")


def run_traces(
    prompts: pl.DataFrame,
    cfg: TracesConfig,
    seed: int,
    out_dir: str | Path,
    cache_dir: str | Path,
    backend_factory: BackendFactory | None = None,
    source: str = "prompts",
) -> dict[str, Any]:
    """Run every teacher and write traces.parquet, removed.parquet, stats.json, meta/<teacher>.json
    (all a function of the data) and run.json (what this run sent, its tokens and wall time)."""
    check_prompts(prompts, source)
    out_dir = Path(out_dir)
    cache = GenerationCache(cache_dir)
    factory = backend_factory or (lambda t: make_backend(t, cfg.shard_size))
    frames, removed, per_teacher, metas, runs = [], [], {}, {}, {}
    for teacher in cfg.teachers:
        rows, rem, stats, meta, run = run_teacher(prompts, teacher, cfg, cache, seed, factory)
        frames.append(rows)
        removed.extend(rem)
        per_teacher[teacher.name] = stats
        metas[teacher.name] = meta
        runs[teacher.name] = run
    schema = trace_schema(prompts)
    traces = pl.concat(frames, how="vertical_relaxed").sort(["id", "teacher"])
    removed_df = pl.DataFrame(
        removed,
        schema={
            "id": pl.String,
            "stage": pl.String,
            "reason": pl.String,
            "detail": pl.String,
            "teacher": pl.String,
        },
    ).sort(["id", "teacher", "reason"])
    rows_in = sum(s["prompts_selected"] for s in per_teacher.values())
    counts = dict(sorted(Counter(removed_df["reason"].to_list()).items()))
    stats = {
        "funnel": Funnel(stage=STAGE, rows_in=rows_in, rows_out=traces.height, removed=counts).dump(),
        "funnel_unit": "(prompt, teacher) pairs",
        "prompts_in": prompts.height,
        "teachers": per_teacher,
    }
    write_parquet(traces, out_dir / "traces.parquet", schema)
    write_parquet(removed_df, out_dir / "removed.parquet", REMOVED_TRACES_SCHEMA)
    for name, meta in metas.items():
        write_json(meta, out_dir / "meta" / f"{name}.json")
    write_json(stats, out_dir / "stats.json")
    write_json({"teachers": runs}, out_dir / "run.json")
    return stats
