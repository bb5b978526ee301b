"""The optional judge of open answers: a teacher backend asked whether a response agrees with the
reference, cached and resumable exactly like the teachers' generations.

A judged row is a trace whose answer kind is `open` and whose reference is not empty. Its judging
request is the prompt file rendered with the trace's question, reference and response (no system
message), keyed like a generation (`builders.generation.keys.cache_keys` over the item id
`<id>:<teacher>`, an empty system prompt, the rendered prompt, the judge's model, resolved
revision and sampling): a changed prompt file, judge or sampling judges again, an unchanged one
never. Replies go to their own `GenerationCache` as they arrive (`builders.generation.loop.send`),
so `kill -9` loses at most one shard and a rerun sends only what is missing.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from builders.generation.base import GenError, GenRequest
from builders.generation.cache import GenerationCache
from builders.generation.config import GenerationRunConfig
from builders.generation.keys import cache_keys, request_seeds
from builders.generation.loop import (
    BackendFactory,
    count_prompt_tokens,
    load_tokenizer,
    send,
    teacher_budget,
    teacher_revision,
)
from builders.generation.provenance import vllm_version
from builders.generation.registry import TeacherConfig
from core.chat import build_messages
from core.contracts import JudgeRecord
from core.errors import ParamsError, PipelineError

logger = logging.getLogger(__name__)

PROMPT_FILE = Path(__file__).with_name("judge_prompt.txt")
PLACEHOLDERS = ("question", "reference", "response")
MIN_NEW_TOKENS = 4  # room a judging prompt must leave in the judge's context for its verdict
_PLACEHOLDER = re.compile(r"\{(question|reference|response)\}")
# The first verdict word of the reply; "not correct" is a wrong verdict, as is "incorrect".
_VERDICT = re.compile(r"\b(incorrect|not correct|correct)\b", re.IGNORECASE)
# What became of a judged row (`judge_outcome`); only `judged` carries a verdict.
JUDGED, UNPARSEABLE, TOO_LONG, FAILED = "judged", "unparseable", "prompt_too_long", "request_error"
OUTCOME_SCHEMA = {
    "item": pl.String,
    "judge_verdict": pl.String,
    "judge_reply": pl.String,
    "judge_outcome": pl.String,
}


@dataclass(frozen=True)
class JudgePrompt:
    """The judging prompt: a text file with `{question}`, `{reference}` and `{response}` in it."""

    path: str
    text: str
    sha256: str

    @classmethod
    def load(cls, path: str | None) -> JudgePrompt:
        """Read the prompt file (`PROMPT_FILE` when None); a missing placeholder is a params error."""
        file = Path(path) if path else PROMPT_FILE
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise ParamsError(f"verify.judge_prompt: cannot read {file}: {exc.strerror or exc}") from None
        text = data.decode("utf-8")
        missing = [p for p in PLACEHOLDERS if "{" + p + "}" not in text]
        if missing:
            raise ParamsError(f"verify.judge_prompt: {file} lacks the placeholders {missing}")
        shown = path or "builders/verify/judge_prompt.txt"
        return cls(path=shown, text=text, sha256=hashlib.sha256(data).hexdigest())

    def render(self, question: str, reference: str, response: str) -> str:
        """The prompt with the three fields filled in (in one pass: a field's own text is left as is)."""
        values = {"question": question, "reference": reference, "response": response}
        return _PLACEHOLDER.sub(lambda m: values[m[1]], self.text)


def parse_verdict(reply: str | None) -> str | None:
    """`correct` or `wrong` from the judge's reply (its first verdict word); None when it has none."""
    m = _VERDICT.search(reply or "")
    if m is None:
        return None
    return "correct" if m[1].lower() == "correct" else "wrong"


def item_id() -> pl.Expr:
    """The judged item of a trace row: `<id>:<teacher>`."""
    return pl.concat_str(pl.col("id"), pl.lit(":"), pl.col("teacher")).alias("item")


@dataclass
class Judge:
    """One judge over one run of the stage: the keys of the rows it judges and what became of them."""

    cfg: TeacherConfig
    prompt: JudgePrompt
    cache: GenerationCache
    revision: str
    parts: list[pl.DataFrame] = field(default_factory=list)  # (item, _key) per planned batch
    too_long: dict[str, str] = field(default_factory=dict)  # item -> detail
    errors: dict[str, GenError] = field(default_factory=dict)  # key -> error of this run
    run: dict[str, Any] = field(default_factory=dict)
    _keys: pl.DataFrame | None = None

    @classmethod
    def open(cls, cfg: TeacherConfig, prompt: JudgePrompt, cache_dir: Path) -> Judge:
        """The judge with its revision resolved and its cache opened."""
        try:
            revision = teacher_revision(cfg)
        except ValueError as exc:
            raise ParamsError(f"verify.judge: {exc}") from None
        return cls(cfg=cfg, prompt=prompt, cache=GenerationCache(cache_dir, lock=True), revision=revision)

    def requests_frame(self, rows: pl.DataFrame) -> pl.DataFrame:
        """(id = item, system_prompt, question = the rendered prompt) of trace rows to judge."""
        cols = [rows[c].to_list() for c in PLACEHOLDERS]
        texts = [self.prompt.render(q, r, a) for q, r, a in zip(*cols, strict=True)]
        return pl.DataFrame(
            {"id": rows.select(item_id())["item"], "system_prompt": [""] * rows.height, "question": texts},
            schema={"id": pl.String, "system_prompt": pl.String, "question": pl.String},
        )

    def plan(self, rows: pl.DataFrame) -> None:
        """Add the cache keys of one batch of rows to judge."""
        frame = self.requests_frame(rows)
        key = cache_keys(frame, self.cfg.model, self.revision, self.cfg.sampling).alias("_key")
        self.parts.append(frame.select(pl.col("id").alias("item")).with_columns(key))

    @property
    def keys(self) -> pl.DataFrame:
        """(item, _key) of every row to judge, sorted by item."""
        if self._keys is None:
            empty = pl.DataFrame(schema={"item": pl.String, "_key": pl.String})
            self._keys = pl.concat([empty, *self.parts]).sort("item")
            self.parts = []
        return self._keys

    def record(self) -> JudgeRecord:
        """What judged: model, resolved revision, backend, sampling and the prompt's digest."""
        return JudgeRecord(
            model=self.cfg.model,
            revision=self.revision,
            requested_revision=self.cfg.revision,
            backend=self.cfg.backend,
            vllm_version=vllm_version() if self.cfg.backend == "vllm" else None,
            sampling=self.cfg.sampling.model_dump(mode="json"),
            max_model_len=self.cfg.max_model_len,
            prompt_file=self.prompt.path,
            prompt_sha256=self.prompt.sha256,
        )

    def _requests(self, batches: Iterator[pl.DataFrame], todo: pl.DataFrame) -> Iterator[GenRequest]:
        """Requests for the `todo` items, a batch of trace rows at a time; prompts too long for the
        judge's context go to `too_long` instead."""
        tokenizer = load_tokenizer(self.cfg)
        wanted = todo["item"].implode()
        limit = self.cfg.max_model_len
        for batch in batches:
            rows = batch.with_columns(item_id()).filter(pl.col("item").is_in(wanted)).join(todo, on="item")
            if not rows.height:
                continue
            frame = self.requests_frame(rows)
            convs = [build_messages("", q) for q in frame["question"]]
            counts = count_prompt_tokens(tokenizer, convs) if tokenizer is not None else [0] * rows.height
            seeds = request_seeds(self.cfg.sampling.seed, rows["item"])
            for item, key, conv, n, seed in zip(
                rows["item"], rows["_key"], convs, counts, seeds, strict=True
            ):
                if tokenizer is not None and n + MIN_NEW_TOKENS > limit:
                    detail = f"{n} prompt tokens + {MIN_NEW_TOKENS} > judge max_model_len {limit}"
                    self.too_long[item] = detail
                    continue
                max_tokens = self.cfg.sampling.max_tokens
                if tokenizer is not None:
                    max_tokens = min(max_tokens, limit - n)
                yield GenRequest(key, item, conv, max_tokens, seed, n if tokenizer is not None else None)

    def send(
        self,
        batches: Callable[[], Iterator[pl.DataFrame]],
        gen_cfg: GenerationRunConfig,
        factory: BackendFactory,
    ) -> None:
        """Judge every planned row not in the cache yet; `batches()` reads the trace table again."""
        keys = self.keys
        todo = keys.filter(~pl.col("_key").is_in(self.cache.keys().implode()))
        logger.info("judge %s: %d rows to judge, %d cached, %d to send", self.cfg.model, keys.height,
                    keys.height - todo.height, todo.height)  # fmt: skip
        budget = teacher_budget(
            self.cfg, self.cache, keys.filter(~pl.col("_key").is_in(todo["_key"].implode()))["_key"]
        )
        requests = self._requests(batches(), todo) if todo.height else iter(())
        # no engine is started when nothing is left to send
        done = send(requests, todo.height, self.cfg, gen_cfg, self.cache, self.revision, budget, factory)
        self.errors = dict(done.errors)
        self.run = {
            "cached_before_run": keys.height - todo.height,
            "sent": budget.admitted if budget is not None else todo.height - len(self.too_long),
            "prompt_tokens": done.prompt_tokens,
            "completion_tokens": done.completion_tokens,
            "wall_time_s": round(done.wall_s, 3),
            **done.figures,
        }
        if budget is not None:
            self.run.update(cost=round(budget.spent, 6), spent_total=round(budget.total, 6))
            logger.info("judge %s: %s", self.cfg.model, budget.line())
            if budget.stopped:
                raise budget.reached(todo.height - len(self.too_long) - budget.admitted)

    def outcomes(self, rows: pl.DataFrame) -> pl.DataFrame:
        """Per judged trace row (`item` column): judge_verdict (correct/wrong/null), judge_reply and
        judge_outcome (judged, unparseable, prompt_too_long, request_error)."""
        if not rows.height:
            return pl.DataFrame(schema=OUTCOME_SCHEMA)
        first, last = rows["item"].min(), rows["item"].max()
        keys = self.keys
        lo = int(keys["item"].search_sorted(first, side="left"))
        hi = int(keys["item"].search_sorted(last, side="right"))
        keys = rows.select("item").join(keys.slice(lo, hi - lo), on="item", how="left")
        found = self.cache.lookup(keys["_key"], str(first), str(last)).select("key", "response")
        joined = keys.join(found, left_on="_key", right_on="key", how="left")
        out = []
        for item, key, reply in joined.select("item", "_key", "response").iter_rows():
            if reply is not None:
                verdict = parse_verdict(reply)
                out.append((item, verdict, reply, JUDGED if verdict else UNPARSEABLE))
            elif item in self.too_long:
                out.append((item, None, self.too_long[item], TOO_LONG))
            elif key in self.errors:
                out.append((item, None, self.errors[key].detail, FAILED))
            else:
                raise PipelineError(f"judge {self.cfg.model}: no verdict for {item} (not cached, not failed)")
        return pl.DataFrame(out, schema=OUTCOME_SCHEMA, orient="row")
