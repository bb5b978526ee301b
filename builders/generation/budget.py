"""A teacher's budget: what its answers cost by their `usage`, and a gate that sends nothing that could
take the spend past `max_cost`.

The budget covers the teacher's answers in the generation cache for the prompts it is asked (those
of earlier runs and of this one), priced at its backend's price (the Batch API's for
`openai_batch`). Before a request is sent, `Budget.gate` reserves its worst case: its prompt tokens
(counted by the teacher's tokenizer, with a margin for the server's own template; without a
tokenizer its UTF-8 bytes, an upper bound for byte-level tokenizers) plus `max_tokens`. A request is
sent only while spent + reserved + its worst case <= `max_cost`; an answer replaces its reservation
by its cost by usage, a failure frees it. So the spend never passes `max_cost`, and a rerun with a
higher `max_cost` sends the rest. An answer paid for and thrown away (an empty one asked again, one
from another model) counts in this run's spend the moment it comes, and an empty answer is asked
again only while its worst case still fits.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from builders.generation.base import GenError, GenRequest, GenResult
from core.errors import PipelineError

logger = logging.getLogger(__name__)

PROMPT_MARGIN = 1.05  # counted prompt tokens x this + TEMPLATE_TOKENS: the worst case of a prompt
TEMPLATE_TOKENS = 16  # per message, for the chat template's markers (an uncounted prompt)


def worst_prompt_tokens(req: GenRequest) -> int:
    """The most prompt tokens `req` can be billed: counted tokens with a margin, else its bytes."""
    if req.prompt_tokens is not None:
        return math.ceil(req.prompt_tokens * PROMPT_MARGIN) + TEMPLATE_TOKENS
    return sum(len(m["content"].encode()) + TEMPLATE_TOKENS for m in req.messages) + TEMPLATE_TOKENS


class BudgetReached(PipelineError):
    """A teacher's budget stopped its run (after every finished answer was cached)."""


@dataclass
class Budget:
    """Spend and reservations of one teacher's run, at per-token prices (`price_in`, `price_out`)."""

    teacher: str
    price_in: float
    price_out: float
    max_cost: float | None = None
    spent_before: float = 0.0  # the cached answers' cost when the run starts
    spent: float = 0.0  # this run's answers
    reserved: float = 0.0
    admitted: int = 0
    stopped: bool = False  # a request was held back by the budget
    _held: dict[str, float] = field(default_factory=dict)
    _room: threading.Condition = field(default_factory=threading.Condition)

    def cost(self, prompt_tokens: float, completion_tokens: float) -> float:
        return prompt_tokens * self.price_in + completion_tokens * self.price_out

    def worst(self, req: GenRequest) -> float:
        return self.cost(worst_prompt_tokens(req), req.max_tokens)

    def over(self, worst: float) -> bool:
        """Whether a request of this worst case could take the spend past `max_cost` now."""
        return self.max_cost is not None and self.total + self.reserved + worst > self.max_cost

    @property
    def total(self) -> float:
        """Spent: before the run and in it."""
        return self.spent_before + self.spent

    def gate(self, requests: Iterable[GenRequest], *, waits: bool) -> BudgetGate:
        """`requests` while their worst case fits the budget (see `BudgetGate`)."""
        return BudgetGate(self, iter(requests), waits)

    def settle(self, outcome: GenResult | GenError) -> None:
        """An answer's cost replaces its reservation; a failure frees it."""
        with self._room:
            self.reserved -= self._held.pop(outcome.key, 0.0)
            if isinstance(outcome, GenResult):
                self.spent += self.cost(outcome.prompt_tokens, outcome.completion_tokens)
            self._room.notify_all()

    def discard(self, key: str, prompt_tokens: int, completion_tokens: int, max_tokens: int) -> bool:
        """An answer paid for and thrown away (request `key`, billed `prompt_tokens` and
        `completion_tokens`): its cost counts now. Whether asking again (the same prompt, at most
        `max_tokens`) still fits, the request's reservation counted when it is still held."""
        with self._room:
            self.spent += self.cost(prompt_tokens, completion_tokens)
            again = self.cost(prompt_tokens, max_tokens)
            return not self.over(again - self._held.get(key, 0.0))

    def line(self) -> str:
        """What was spent and what is left."""
        left = (
            f", {self.max_cost - self.total:.4f} left of max_cost {self.max_cost:g}" if self.max_cost else ""
        )
        return f"spent {self.total:.4f} by usage ({self.spent:.4f} in this run){left}"

    def reached(self, unsent: int) -> BudgetReached:
        """The error a run stopped by the budget raises once its answers are cached."""
        return BudgetReached(
            f"teacher {self.teacher}: budget reached: {self.line()}; {unsent} prompts not sent, every "
            f"finished answer is cached; raise max_cost of teacher {self.teacher} to send the rest"
        )


def budget_of(requests: object) -> Budget | None:
    """The budget gating `requests` (None when they are not a `BudgetGate`)."""
    return requests.budget if isinstance(requests, BudgetGate) else None


class BudgetGate(Iterator[GenRequest]):
    """The requests of a run while their worst case fits the budget; the end at the first that does
    not. With `waits` (a backend that takes requests on a thread of its own, while answers keep
    coming on another), a request that does not fit yet waits for the answers in flight to free
    their reservations, and ends the requests only when nothing is in flight; without it (a backend
    that sends everything before any answer comes) it ends them at once."""

    def __init__(self, budget: Budget, requests: Iterator[GenRequest], waits: bool) -> None:
        self.budget, self.requests, self.waits = budget, requests, waits
        self.closed = False

    def __next__(self) -> GenRequest:
        b = self.budget
        req = None if self.closed else next(self.requests, None)
        if req is not None:
            worst = b.worst(req)
            with b._room:
                while not self.closed and b.over(worst):
                    if not (self.waits and b._held):
                        b.stopped = True
                        break
                    b._room.wait()
                if not self.closed and not b.over(worst):
                    b.reserved += worst
                    b._held[req.key] = worst
                    b.admitted += 1
                    return req
        self.close()
        raise StopIteration

    def close(self) -> None:
        """Admit nothing more (reservations no longer decide anything, so they are dropped); a
        request waiting for room gives up."""
        b = self.budget
        with b._room:
            self.closed = True
            b._held.clear()
            b.reserved = 0.0
            b._room.notify_all()
