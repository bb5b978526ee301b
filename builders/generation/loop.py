"""The generate loop every generation run shares (`traces`' teachers, the `verify` judge).

Requests go to a backend through a budget's gate when there is one; completed generations are
written to the cache as they arrive (at most `flush_s` after each, `builders.generation.writer`),
so a killed run loses at most the answers of its last `flush_s` and a rerun sends only what is
missing. A run stopped by an exception (a whole-run failure of the backend, the failure-rate guard,
Ctrl-C) writes its finished answers first. A failed request is a `GenError`, never cached, so a
rerun sends it again; when more than `max_failure_rate` of a run's results fail (over at least
`min_results_for_rate`), the run stops rather than releasing removals.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import polars as pl
from tqdm import tqdm

from builders.generation.api import ApiTeacher
from builders.generation.base import REQUEST_ERROR, Backend, GenError, GenRequest, TeacherBase
from builders.generation.budget import Budget
from builders.generation.cache import GenerationCache
from builders.generation.config import GenerationRunConfig
from builders.generation.provenance import resolve_revision
from builders.generation.writer import CacheWriter
from core import parent
from core.errors import PipelineError

logger = logging.getLogger(__name__)

BackendFactory = Callable[[Any], Backend]


def load_tokenizer(teacher: TeacherBase) -> Any:
    """The teacher's tokenizer (for the context check and token counts) or None when it cannot be
    had locally."""
    source = teacher.tokenizer_source
    try:
        from transformers import AutoTokenizer

        revision = teacher.revision if source == teacher.model else None
        return AutoTokenizer.from_pretrained(source, revision=revision)
    except Exception as exc:
        logger.warning("teacher %s: no tokenizer for %s (%s); lengths unchecked", teacher.name, source, exc)
        return None


def count_prompt_tokens(tokenizer: Any, convs: list[list[dict[str, str]]]) -> list[int]:
    """Prompt tokens of each conversation through the chat template (as vLLM's chat encodes it)."""
    texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in convs]
    counts: list[int] = []
    for start in range(0, len(texts), 1024):
        enc = tokenizer(texts[start : start + 1024], add_special_tokens=False)["input_ids"]
        counts.extend(len(e) for e in enc)
    return counts


def teacher_revision(teacher: TeacherBase) -> str:
    """The resolved revision of the teacher's model (a local folder's hash, a Hub commit); for an API
    teacher whose model is neither, its `revision` as given: the provider's snapshot name."""
    try:
        return resolve_revision(teacher.model, teacher.revision)
    except ValueError:
        if isinstance(teacher, ApiTeacher) and teacher.revision:
            return teacher.revision
        raise


def check_failure_rate(teacher: str, cfg: GenerationRunConfig, failed: int, results: int, last: str) -> None:
    """Stop the run when, over at least `min_results_for_rate` results, too many are request errors."""
    if results < cfg.min_results_for_rate or failed <= cfg.max_failure_rate * results:
        return
    raise PipelineError(
        f"teacher {teacher}: {failed} of {results} requests failed in this run "
        f"({failed / results:.0%} > {cfg.SECTION}.max_failure_rate {cfg.max_failure_rate:g}; last: {last}); "
        "finished answers are cached and a rerun sends only the rest: fix the server, "
        f"or raise {cfg.SECTION}.max_failure_rate"
    )


def generate(
    backend: Backend,
    requests: Iterable[GenRequest],
    total: int,
    teacher: TeacherBase,
    cfg: GenerationRunConfig,
    cache: GenerationCache,
    revision: str,
    budget: Budget | None = None,
) -> tuple[dict[str, GenError], int, int]:
    """Send `requests` (through `budget`'s gate when there is one): (errors by key, prompt tokens,
    completion tokens) of this run.

    Answers go to the cache every `shard_size` answers, and none is held longer than `flush_s`
    seconds whether more come or not (`CacheWriter`; small shards are compacted once they add up to
    `cache_pack_bytes`), and, whatever stops the run (a `PipelineError` from the backend or the
    failure-rate guard, Ctrl-C, a bug), before the exception propagates; the backend's generator
    is closed first, so nothing more is sent. When the failure-rate guard trips, the backend is
    stopped and requests already sent still come back and are cached. Errors are never cached. A
    budget that holds a request back ends the requests: what was sent comes back and is cached, and
    `budget.stopped` tells the caller.
    """
    errors: dict[str, GenError] = {}
    n = failed = prompt_tokens = completion_tokens = 0
    last = ""
    stopped: PipelineError | None = None
    gate = budget.gate(requests, waits=teacher.GATE_WAITS) if budget is not None else None
    results = backend.generate(gate if gate is not None else requests)
    unwatch = parent.stop_on_orphan(backend.stop)  # dvc is gone: send nothing more, keep what comes back
    bar = tqdm(total=total, desc=f"{cfg.SECTION} {teacher.name}", unit="prompt")
    writer = CacheWriter(cache, teacher.model, revision, shard_size=cfg.shard_size, flush_s=cfg.flush_s,
                         pack_bytes=cfg.cache_pack_bytes)  # fmt: skip
    try:
        for r in results:
            if budget is not None:
                budget.settle(r)
            if isinstance(r, GenError):
                errors[r.key] = r
                if r.reason == REQUEST_ERROR:
                    failed, last = failed + 1, r.detail
            else:
                writer.add(r)
                prompt_tokens += r.prompt_tokens
                completion_tokens += r.completion_tokens
            n += 1
            bar.update(1)
            if stopped is None:
                try:
                    check_failure_rate(teacher.name, cfg, failed, n, last)
                except PipelineError as exc:
                    stopped = exc
                    backend.stop()  # send nothing more; what is on the wire still comes back
        if stopped is not None:
            raise stopped
        parent.raise_if_orphaned(f"teacher {teacher.name} stopped sending; the answers that came are cached")
        check_failure_rate(teacher.name, cfg, failed, n, last)  # the whole run, at its end
    finally:
        unwatch()
        try:
            if gate is not None:
                gate.close()  # a request waiting for room gives up: the backend can end
            close = getattr(results, "close", None)
            if close is not None:
                close()  # on a stop: cancel what the backend has not sent yet
        finally:
            bar.close()
            writer.close()  # the answers still held
    return errors, prompt_tokens, completion_tokens


def teacher_budget(teacher: TeacherBase, cache: GenerationCache, cached: pl.Series) -> Budget | None:
    """The teacher's budget (None when it has no price), counting the cost of its `cached` answers."""
    if not isinstance(teacher, ApiTeacher) or teacher.price is None:
        return None
    price_in, price_out = teacher.price.per_token(teacher.PRICED_AT or "online")
    budget = Budget(teacher.name, price_in, price_out, teacher.max_cost)
    usage = cache.token_usage(cached)
    budget.spent_before = budget.cost(
        int(usage["prompt_tokens"].sum()), int(usage["completion_tokens"].sum())
    )
    return budget


@dataclass(frozen=True)
class Sent:
    """What one `send` did: failed requests by key, tokens of its answers, the backend's own figures
    (run.json) and its wall time."""

    errors: Mapping[str, GenError] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    figures: Mapping[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0


def send(
    requests: Iterator[GenRequest],
    total: int,
    teacher: TeacherBase,
    cfg: GenerationRunConfig,
    cache: GenerationCache,
    revision: str,
    budget: Budget | None,
    factory: BackendFactory,
) -> Sent:
    """`generate` on a backend made by `factory` for `teacher` (none is made, no engine started,
    when `requests` is empty); the backend is closed and the cache compacted however it ends."""
    first = next(requests, None)
    start = time.perf_counter()
    if first is None:
        return Sent()
    backend = factory(teacher)
    try:
        errors, prompt_tokens, completion_tokens = generate(
            backend, chain([first], requests), total, teacher, cfg, cache, revision, budget
        )
    finally:
        figures = backend.figures()
        backend.close()
        cache.compact(cfg.cache_pack_bytes)
    return Sent(errors, prompt_tokens, completion_tokens, figures, time.perf_counter() - start)
