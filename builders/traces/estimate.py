"""The bill before the run: per teacher, what is left to send, its tokens and what it will cost.

For each teacher (its prompts, the generation cache subtracted): prompts to send (and those too
long for its context, which are never sent); input tokens, counted with the teacher's tokenizer
through its chat template where it loads (`tokenizer`, else `model`), otherwise approximated from
characters (`CHARS_PER_TOKEN`, band `LOW_CHARS_PER_TOKEN` to `HIGH_TOKENS_PER_BYTE`, plus
`MESSAGE_TOKENS` a message); output tokens, at most `max_tokens` a prompt, expected from the
teacher's answers already in the cache (their mean, with a distribution-free band) or, with
`pilot` N, from N answers: prompts chosen by a seeded hash are sent first until N are cached
(cached like any answer, so the run does not pay for them again); and the cost low / expected /
high at the teacher's online and batch prices, with the worst case the budget reserves. Nothing
is written but the pilot's answers.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl

from builders.generation.api import ApiTeacher
from builders.generation.budget import PROMPT_MARGIN, TEMPLATE_TOKENS, worst_prompt_tokens
from builders.generation.cache import GenerationCache
from builders.generation.loop import BackendFactory, teacher_budget
from builders.generation.registry import make_backend
from builders.traces.config import TracesConfig
from builders.traces.run import iter_requests, plan_teachers, run_teacher
from builders.traces.tables import TeacherPlan, check_prompts, open_prompts
from core.hashing import unit_hashes
from core.io import ParquetTable

logger = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4.0  # expected, without a tokenizer (OpenAI's rule of thumb for English)
LOW_CHARS_PER_TOKEN = 6.0  # low band: long common words
HIGH_TOKENS_PER_BYTE = 0.5  # high band: non-English text, code, numbers
MESSAGE_TOKENS = 4  # a chat message's template markers, without a tokenizer
COUNTED_LOW = 0.98  # a counted prompt: the server may render a token or two less
BAND_RISK = 0.01  # the output band holds with probability >= 99% (for a random sample of answers)
PILOT_SALT = "pilot"  # the pilot's prompts: the smallest sha256("pilot:<seed>:<id>")


@dataclass(frozen=True)
class TeacherEstimate:
    """One teacher's bill (token counts over the prompts still to send)."""

    teacher: str
    backend: str
    selected: int
    cached: int
    to_send: int
    too_long: int
    input_tokens: int  # expected
    input_low: int
    input_high: int
    input_method: str
    output_low: int
    output_expected: int | None  # None: no answer to learn from
    output_high: int
    output_max: int  # every prompt writes its max_tokens
    output_basis: str
    worst_input: int  # what the budget reserves for the prompts
    price: dict[str, Any] | None
    cost: dict[str, dict[str, float | None]] | None  # online/batch -> low, expected, high, worst
    max_cost: float | None
    spent: float | None  # the cached answers, at the teacher's price

    def dump(self) -> dict[str, Any]:
        return asdict(self)


def pilot_subset(todo: pl.DataFrame, n: int, seed: int) -> pl.DataFrame:
    """`n` of the `todo` prompts (id, _key), chosen by a seeded hash of the id (stable)."""
    if n <= 0 or todo.is_empty():
        return todo.head(0)
    order = pl.Series("_h", unit_hashes(f"{PILOT_SALT}:{seed}", todo["id"]))
    return todo.with_columns(order).sort("_h").head(n).drop("_h").sort("id")


def _output(
    cache: GenerationCache, cached: pl.Series, n: int, max_tokens: int
) -> tuple[int, int | None, int, str]:
    """(low, expected, high) output tokens of `n` prompts, and what they rest on.

    From k cached answers: their mean a prompt, and a distribution-free band (Hoeffding, 99%) for
    the mean of the n prompts to send: mean +- max_tokens x sqrt(ln(200) / 2) x sqrt(1/k + 1/n)."""
    usage = cache.token_usage(cached)
    k = usage.height
    bound = n * max_tokens
    if k == 0:
        why = f"no cached answer to learn from (send a pilot: --pilot N); at most max_tokens {max_tokens}"
        return min(n, bound), None, bound, why
    mean = float(usage["completion_tokens"].cast(pl.Float64).mean())  # type: ignore[arg-type]
    spread = max_tokens * math.sqrt(math.log(2 / BAND_RISK) / 2) * math.sqrt(1 / k + 1 / max(n, 1))
    low, high = max(1.0, mean - spread), min(float(max_tokens), mean + spread)
    basis = f"{mean:.1f} a prompt over {k} cached answers; band +-{spread:.1f} a prompt (Hoeffding, 99%)"
    return min(math.floor(low * n), bound), round(mean * n), min(bound, math.ceil(high * n)), basis


def estimate_teacher(
    source: ParquetTable, plan: TeacherPlan, todo: pl.DataFrame, cfg: TracesConfig, cache: GenerationCache
) -> TeacherEstimate:
    """Count what `plan`'s teacher has left to send (`todo`) and price it."""
    t = plan.teacher
    counted = True
    n = inp = inp_low = inp_high = worst = out_max = 0
    too_long: list[pl.DataFrame] = []
    requests = iter_requests(source, todo, plan, cfg, too_long) if todo.height else iter(())
    for req in requests:
        n += 1
        out_max += req.max_tokens
        worst += worst_prompt_tokens(req)
        if req.prompt_tokens is not None:
            inp += req.prompt_tokens
            inp_low += math.floor(req.prompt_tokens * COUNTED_LOW)
            inp_high += worst_prompt_tokens(req)
        else:
            counted = False
            text = [m["content"] for m in req.messages]
            chars = sum(len(c) for c in text)
            extra = MESSAGE_TOKENS * len(text)
            inp += round(chars / CHARS_PER_TOKEN) + extra
            inp_low += math.floor(chars / LOW_CHARS_PER_TOKEN) + extra
            inp_high += math.ceil(sum(len(c.encode()) for c in text) * HIGH_TOKENS_PER_BYTE) + extra
    method = (
        f"counted with the tokenizer of {t.tokenizer_source} through its chat template (band "
        f"-{1 - COUNTED_LOW:.0%} to +{PROMPT_MARGIN - 1:.0%} and {TEMPLATE_TOKENS} a prompt: "
        "the server's own template)"
        if counted
        else f"approximated: characters / {CHARS_PER_TOKEN:g} + {MESSAGE_TOKENS} a message "
        f"(band characters / {LOW_CHARS_PER_TOKEN:g} to UTF-8 bytes x {HIGH_TOKENS_PER_BYTE:g})"
    )
    cached = plan.keys.filter(~pl.col("_key").is_in(todo["_key"].implode()))["_key"]
    out_low, out_exp, out_high, basis = _output(cache, cached, n, t.sampling.max_tokens)
    out_high = min(out_high, out_max)
    price = cost = max_cost = spent = None
    if isinstance(t, ApiTeacher):
        max_cost = t.max_cost
        if t.price is not None:
            price = t.price.resolved()
            cost = {}
            for at in ("online", "batch"):
                pin, pout = t.price.per_token(at)
                cost[at] = {
                    "low": inp_low * pin + out_low * pout,
                    "expected": inp * pin + out_exp * pout if out_exp is not None else None,
                    "high": inp_high * pin + out_high * pout,
                    "worst": worst * pin + out_max * pout,
                }
            spent = teacher_budget(t, cache, cached).spent_before  # type: ignore[union-attr]
    return TeacherEstimate(
        teacher=t.name, backend=t.backend, selected=plan.keys.height, cached=plan.keys.height - todo.height,
        to_send=n, too_long=sum(f.height for f in too_long), input_tokens=inp, input_low=inp_low,
        input_high=inp_high,
        input_method=method, output_low=out_low, output_expected=out_exp, output_high=out_high,
        output_max=out_max, output_basis=basis, worst_input=worst, price=price, cost=cost,
        max_cost=max_cost, spent=spent,
    )  # fmt: skip


def estimate_traces(
    prompts: pl.DataFrame | Path,
    cfg: TracesConfig,
    seed: int,
    cache_dir: str | Path,
    pilot: int = 0,
    backend_factory: BackendFactory | None = None,
    source: str = "prompts",
) -> list[TeacherEstimate]:
    """Every teacher's bill; with `pilot`, first make sure each teacher has that many answers cached,
    sending the rest of them (cached like any answer; a budget still applies)."""
    with contextlib.ExitStack() as stack:
        table = stack.enter_context(open_prompts(prompts))
        check_prompts(table, source)
        cache = stack.enter_context(GenerationCache(cache_dir, lock=pilot > 0))  # a pilot writes: one writer
        if pilot > 0:
            factory = backend_factory or (lambda teacher: make_backend(teacher, cache.root))
            for plan, todo in plan_teachers(table, cfg.teachers, cache, seed):
                subset = pilot_subset(todo, pilot - (plan.keys.height - todo.height), seed)
                if subset.height:
                    logger.info("teacher %s: pilot of %d prompts", plan.teacher.name, subset.height)
                    run_teacher(table, plan, subset, cfg, cache, factory)
        return [
            estimate_teacher(table, plan, todo, cfg, cache)
            for plan, todo in plan_teachers(table, cfg.teachers, cache, seed)
        ]


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:,.4f}"


def format_estimate(estimates: list[TeacherEstimate]) -> str:
    """The bill as text, a block per teacher."""
    out = []
    for e in estimates:
        exp = "unknown" if e.output_expected is None else f"{e.output_expected:,}"
        lines = [
            f"teacher {e.teacher} ({e.backend})",
            f"  prompts: {e.selected:,} selected, {e.cached:,} cached, {e.to_send:,} to send"
            + (f", {e.too_long:,} too long for its context (not sent)" if e.too_long else ""),
            f"  input tokens: {e.input_tokens:,} (low {e.input_low:,}, high {e.input_high:,}); "
            + e.input_method,
            f"  output tokens: expected {exp}, low {e.output_low:,}, high {e.output_high:,}, at most "
            f"{e.output_max:,}; {e.output_basis}",
        ]
        if e.cost is None:
            lines.append("  cost: no price (set price: {input, output} per million tokens)")
        else:
            lines.append(f"  cost {'':8} {'low':>12} {'expected':>12} {'high':>12} {'worst case':>12}")
            for at, c in e.cost.items():
                lines.append(
                    f"  {at:13} {_money(c['low']):>12} {_money(c['expected']):>12} {_money(c['high']):>12}"
                    f" {_money(c['worst']):>12}"
                )
            lines.append(f"  price per million tokens: {e.price}")
        if e.max_cost is not None:
            lines.append(f"  budget: max_cost {e.max_cost:g}; the cached answers cost {_money(e.spent)}")
        out.append("\n".join(lines))
    return "\n\n".join(out)
