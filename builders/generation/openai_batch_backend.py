"""Batch API backend (`openai_batch`): request files submitted through the official `openai` SDK, at
the Batch API's price, collected into the generation cache.

A run (1) reads the batch records in the cache folder (`builders.generation.batch_records`): a batch
submitted by an earlier run, killed or not, is polled and collected, never submitted again; (2)
writes the requests no batch holds yet into JSONL files of `{custom_id, method, url, body}` (the
custom id is the cache key) of at most `max_requests_per_file` lines and `max_file_bytes` bytes, and
for each file records it, uploads it, records the file id, creates the batch and records its id; (3)
polls every `poll_s` seconds and, as each batch ends (completed, expired, cancelled), downloads its
output and error files and yields one answer per request. A request that failed or was never run (an
expired batch) is resubmitted, in a file of its own, up to `max_resubmits` times; then it is a
`request_error`. An empty answer (missing or blank content the token limit did not cut) is
resubmitted the same way, while the budget has room for it; still empty after the last submission,
it is the teacher's answer (`empty_response`). A batch the provider refused as a whole (`failed`)
stops the run with its errors, and so does an answer naming another model than the configured one
(`ApiTeacher.serves`): the answers of that batch from there on are not cached and its record stays,
so the next run collects them again, after the config is fixed, without paying twice. What reaches
the consumer is cached there; a record is deleted only after its answers were handed over and the
run has ended (the consumer caches them before `close`). `stop()` submits nothing more and stops
waiting: batches already done are collected, the others stay recorded for the next run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

import polars as pl
from pydantic import Field

from builders.generation.api import ApiTeacher, api_key, safe_url
from builders.generation.base import (
    PROMPT_TOO_LONG,
    REQUEST_ERROR,
    BackendEntry,
    GenError,
    GenRequest,
    GenResult,
)
from builders.generation.batch_records import BatchRecord, BatchRecords
from builders.generation.budget import Budget, budget_of
from builders.generation.cache import GenerationCache
from builders.generation.completions import CONTEXT_HINTS, is_empty, parse_completion
from core.errors import PipelineError

logger = logging.getLogger(__name__)

TERMINAL = ("completed", "expired", "cancelled", "failed")


class OpenAIBatchTeacher(ApiTeacher):
    """A teacher behind a Batch API (OpenAI's, or a compatible provider's)."""

    PRICED_AT: ClassVar[str] = "batch"
    backend: Literal["openai_batch"] = "openai_batch"
    base_url: str = Field(min_length=1, description="the API's base URL, e.g. https://api.openai.com/v1")
    endpoint: str = "/v1/chat/completions"
    completion_window: str = "24h"
    max_requests_per_file: int = Field(50_000, ge=1, description="OpenAI: at most 50,000")
    max_file_bytes: int = Field(200_000_000, ge=1_000, description="OpenAI: at most 200 MB")
    poll_s: float = Field(30.0, gt=0.0, description="seconds between looks at the batches in flight")
    max_resubmits: int = Field(1, ge=0, description="times a failed or expired request is submitted again")
    max_retries: int = Field(5, ge=0, description="retries of one API call (the SDK's own)")
    timeout_s: float = Field(600.0, gt=0.0, description="of one API call")


class RequestFile:
    """A request file being written, within the provider's limits."""

    def __init__(self, path: Path, cfg: OpenAIBatchTeacher) -> None:
        self.path, self.cfg = path, cfg
        self.fh = open(path, "wb")  # noqa: SIM115
        self.sha = hashlib.sha256()
        self.requests: dict[str, str] = {}  # custom id (cache key) -> prompt id
        self.bytes = 0

    def fits(self, line: bytes) -> bool:
        return len(self.requests) < self.cfg.max_requests_per_file and (
            self.bytes + len(line) <= self.cfg.max_file_bytes
        )

    def add(self, key: str, pid: str, line: bytes) -> None:
        self.fh.write(line)
        self.sha.update(line)
        self.bytes += len(line)
        self.requests[key] = pid

    def close(self) -> str:
        """Close the file; its sha256."""
        self.fh.close()
        return self.sha.hexdigest()


class OpenAIBatchBackend:
    """Chat completions through a Batch API; state that must outlive the process in `workdir`."""

    def __init__(self, cfg: OpenAIBatchTeacher, workdir: Path) -> None:
        from openai import OpenAI

        self.cfg = cfg
        self.workdir = Path(workdir)
        self.records = BatchRecords(workdir)
        key = api_key(cfg, [cfg.base_url])
        self.client = OpenAI(
            base_url=cfg.base_url.rstrip("/"), api_key=key or "unused", timeout=cfg.timeout_s,
            max_retries=cfg.max_retries,
        )  # fmt: skip
        self._stopping = threading.Event()
        self._done: list[BatchRecord] = []  # records whose every answer was handed over
        self._figures: dict[str, Any] = {}
        self._budget: Budget | None = None  # the budget gating the requests, when there is one
        self._unnamed = False  # an answer did not name its model (warned once)

    def figures(self) -> dict[str, Any]:
        """Batches and requests submitted (new and resubmitted), batches collected, polls and the
        seconds spent waiting for batches, in the last run."""
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in self._figures.items()}

    def generate(self, requests: Iterable[GenRequest]) -> Iterator[GenResult | GenError]:
        """Submit what no batch holds yet, then yield every answer as its batch ends."""
        self._figures = {"batches_submitted": 0, "requests_submitted": 0, "requests_resubmitted": 0,
                         "batches_collected": 0, "polls": 0, "wait_s": 0.0}  # fmt: skip
        self._budget = budget_of(requests)
        return self._run(iter(requests))

    def _run(self, requests: Iterator[GenRequest]) -> Iterator[GenResult | GenError]:
        pending = self._resume()
        held = {k for _, todo in pending for k in todo}
        with tempfile.TemporaryDirectory(prefix="orca-batch-") as tmp:
            pending += self._submit_new(requests, held, Path(tmp))
            yield from self._collect_all(pending, Path(tmp))

    def _resume(self) -> list[tuple[BatchRecord, dict[str, str]]]:
        """The recorded batches to collect: (record, its requests not cached yet). A record whose
        answers are all cached is deleted; one whose batch was never created is dropped (its
        requests are sent again); a key held by two records belongs to the later attempt."""
        records = self.records.load()
        if not records:
            return []
        cached = GenerationCache(self.workdir).keys().implode()
        owner: dict[str, int] = {}
        for k, rec in enumerate(records):
            for key in rec.requests:
                if key not in owner or records[owner[key]].attempt < rec.attempt:
                    owner[key] = k
        pending = []
        for k, rec in enumerate(records):
            keys = pl.Series("key", list(rec.requests), dtype=pl.String)
            uncached = keys.filter(~keys.is_in(cached)).to_list()
            todo = {key: rec.requests[key] for key in uncached if owner[key] == k}
            if not todo:
                logger.info("batch record %s: every answer is cached", rec.name)
                self.records.drop(rec)
                continue
            if rec.batch_id is None:
                batch = self._find_batch(rec.file_id) if rec.file_id else None
                if batch is None:
                    logger.info("batch record %s: no batch was created; its requests go again", rec.name)
                    self.records.drop(rec)
                    continue
                rec.batch_id = batch.id
                self.records.save(rec)
            logger.info("teacher %s: collecting batch %s of an earlier run (%d requests)", self.cfg.name,
                        rec.batch_id, len(todo))  # fmt: skip
            pending.append((rec, todo))
        return pending

    def _find_batch(self, file_id: str) -> Any:
        """The provider's batch over input file `file_id`, or None."""
        return next((b for b in self.client.batches.list(limit=100) if b.input_file_id == file_id), None)

    def _line(self, req: GenRequest) -> bytes:
        s = self.cfg.sampling
        body = {"model": self.cfg.api_model, "messages": req.messages, "max_tokens": req.max_tokens,
                "temperature": s.temperature, "top_p": s.top_p, "seed": req.seed}  # fmt: skip
        line = {"custom_id": req.key, "method": "POST", "url": self.cfg.endpoint, "body": body}
        return json.dumps(line, ensure_ascii=False).encode() + b"\n"

    def _submit_new(
        self, requests: Iterator[GenRequest], held: set[str], tmp: Path
    ) -> list[tuple[BatchRecord, dict[str, str]]]:
        """Write the requests no record holds into request files and submit each as it fills."""
        out = []
        file: RequestFile | None = None
        for req in requests:
            if self._stopping.is_set():
                break
            if req.key in held:
                continue
            line = self._line(req)
            if file is not None and not file.fits(line):
                out.append(self._submit(file, 0))
                file = None
            if file is None:
                file = RequestFile(tmp / f"requests-{len(out):06d}.jsonl", self.cfg)
            file.add(req.key, req.id, line)
        if file is not None and file.requests:
            out.append(self._submit(file, 0))
        elif file is not None:
            file.close()
        return out

    def _submit(self, file: RequestFile, attempt: int) -> tuple[BatchRecord, dict[str, str]]:
        """Record, upload, record the file id, create the batch, record its id."""
        rec = BatchRecord(name=f"{attempt}-{file.close()[:40]}", attempt=attempt, requests=file.requests)
        self.records.save(rec)
        with open(file.path, "rb") as fh:
            uploaded = self.client.files.create(file=(f"{rec.name}.jsonl", fh), purpose="batch")
        rec.file_id = uploaded.id
        self.records.save(rec)
        batch = self.client.batches.create(
            input_file_id=uploaded.id, endpoint=self.cfg.endpoint,  # type: ignore[arg-type]
            completion_window=self.cfg.completion_window,  # type: ignore[arg-type]
            metadata={"orca_release_record": rec.name},
        )  # fmt: skip
        rec.batch_id = batch.id
        self.records.save(rec)
        file.path.unlink()
        self._figures["batches_submitted"] += 1
        self._figures["requests_submitted" if attempt == 0 else "requests_resubmitted"] += len(rec.requests)
        logger.info("teacher %s: batch %s submitted to %s (%d requests, attempt %d)", self.cfg.name,
                    batch.id, safe_url(self.cfg.base_url), len(rec.requests), attempt)  # fmt: skip
        return rec, dict(rec.requests)

    def _collect_all(
        self, pending: list[tuple[BatchRecord, dict[str, str]]], tmp: Path
    ) -> Iterator[GenResult | GenError]:
        """Poll until every batch has ended (or the run stops), collecting each as it ends."""
        while pending:
            self._figures["polls"] += 1
            ended, running = [], []
            for rec, todo in pending:
                batch = self.client.batches.retrieve(rec.batch_id)  # type: ignore[arg-type]
                (ended if batch.status in TERMINAL else running).append((rec, todo, batch))
            pending = [(rec, todo) for rec, todo, _ in running]
            for rec, todo, batch in ended:
                retry = yield from self._collect(rec, todo, batch, tmp)
                if retry and not self._stopping.is_set():
                    pending.append(self._resubmit(rec, retry, tmp))
                self._done.append(rec)
            if not pending or self._stopping.is_set():
                break
            counts = ", ".join(f"{b.id} {b.status}" for _, _, b in running)
            logger.info("teacher %s: waiting for %d batches (%s)", self.cfg.name, len(running), counts)
            start = time.monotonic()
            self._stopping.wait(self.cfg.poll_s)
            self._figures["wait_s"] += time.monotonic() - start
        if pending:
            logger.info("teacher %s: %d batches left running; the next run collects them", self.cfg.name,
                        len(pending))  # fmt: skip

    def _lines(self, file_id: str | None, tmp: Path) -> Iterator[dict[str, Any]]:
        """The JSON lines of a provider file (downloaded to disk, read a line at a time)."""
        if not file_id:
            return
        path = tmp / f"{file_id}.jsonl"
        self.client.files.content(file_id).write_to_file(path)
        try:
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    if line.strip():
                        yield json.loads(line)
        finally:
            path.unlink(missing_ok=True)

    def _collect(
        self, rec: BatchRecord, todo: dict[str, str], batch: Any, tmp: Path
    ) -> Iterator[GenResult | GenError]:
        """Yield the answers of an ended batch; returns the failed requests to submit again."""
        if batch.status == "failed" and not batch.output_file_id:
            errors = getattr(batch.errors, "data", None) or []
            why = "; ".join(f"{e.code}: {e.message}" for e in errors) or "no reason given"
            self.records.drop(rec)  # nothing ran, nothing is billed
            raise PipelineError(
                f"teacher {self.cfg.name}: batch {batch.id} was refused by {safe_url(self.cfg.base_url)} "
                f"({why}); finished answers are cached, a rerun submits its requests again"
            )
        self._figures["batches_collected"] += 1
        again = rec.attempt < self.cfg.max_resubmits and not self._stopping.is_set()  # may resubmit
        failed: dict[str, str] = {}
        seen: set[str] = set()
        for line in [*self._lines(batch.output_file_id, tmp), *self._lines(batch.error_file_id, tmp)]:
            key = line.get("custom_id")
            if key not in todo or key in seen:
                continue
            seen.add(key)
            outcome = self._outcome(key, todo[key], line)
            if isinstance(outcome, GenError):
                failed[key] = outcome.detail
                continue
            self._check_model(outcome, batch.id)
            if is_empty(outcome) and again:
                if self._budget is None or self._budget.discard(
                    key, outcome.prompt_tokens, outcome.completion_tokens, self.cfg.sampling.max_tokens
                ):
                    failed[key] = f"empty answer (finish_reason={outcome.finish_reason})"
                    continue
                outcome = GenError(key, todo[key], REQUEST_ERROR, "empty answer; max_cost leaves no room to "
                                   f"submit it again (batch {batch.id})")  # fmt: skip
            yield outcome
        for key in todo.keys() - seen:
            failed[key] = f"not run (batch {batch.status})"
        if again:
            return {key: todo[key] for key in failed}
        for key, detail in failed.items():
            hit = any(h in detail.lower() for h in CONTEXT_HINTS)
            yield GenError(key, todo[key], PROMPT_TOO_LONG if hit else REQUEST_ERROR,
                           f"{detail} (batch {batch.id}, {rec.attempt + 1} submissions)")  # fmt: skip
        return {}

    def _check_model(self, result: GenResult, batch_id: str) -> None:
        """Stop the run when an answer names another model than the configured one."""
        served = result.served_model
        if served is None:
            if not self._unnamed:
                self._unnamed = True
                logger.warning("teacher %s: batch %s does not name the model it served; unchecked",
                               self.cfg.name, batch_id)  # fmt: skip
        elif not self.cfg.serves(served):
            where = f"{safe_url(self.cfg.base_url)} (batch {batch_id})"
            raise PipelineError(self.cfg.impostor(served, where))

    def _outcome(self, key: str, pid: str, line: dict[str, Any]) -> GenResult | GenError:
        """One output or error line as an answer, or a `GenError` whose detail says why not."""

        def fail(detail: str) -> GenError:
            return GenError(key, pid, REQUEST_ERROR, detail)

        response = line.get("response") or {}
        status = response.get("status_code")
        if status == 200:
            return parse_completion(key, pid, response.get("body"), fail)
        error = line.get("error") or (response.get("body") or {}).get("error") or {}
        if isinstance(error, dict) and isinstance(error.get("error"), dict):
            error = error["error"]  # vLLM's run-batch nests it
        message = error.get("message") if isinstance(error, dict) else str(error)
        code = error.get("code") if isinstance(error, dict) else None
        return fail(f"HTTP {status}: {message}" if status else f"error {code}: {message}")

    def _resubmit(
        self, rec: BatchRecord, retry: dict[str, str], tmp: Path
    ) -> tuple[BatchRecord, dict[str, str]]:
        """Submit the failed requests of `rec` again, from its input file at the provider."""
        file = RequestFile(tmp / f"retry-{rec.name}.jsonl", self.cfg)
        for line in self._lines(rec.file_id, tmp):
            if line["custom_id"] in retry:
                file.add(line["custom_id"], retry[line["custom_id"]], json.dumps(line).encode() + b"\n")
        logger.info("teacher %s: %d requests of batch %s failed; submitting them again", self.cfg.name,
                    len(retry), rec.batch_id)  # fmt: skip
        return self._submit(file, rec.attempt + 1)

    def stop(self) -> None:
        """Submit nothing more and stop waiting; what has ended is still collected."""
        self._stopping.set()

    def close(self) -> None:
        """Forget the records whose answers were handed over (the consumer has cached them)."""
        self.stop()
        for rec in self._done:
            self.records.drop(rec)
        self._done = []
        self.client.close()


def create(cfg: OpenAIBatchTeacher, workdir: Path) -> OpenAIBatchBackend:
    """The registry's constructor."""
    return OpenAIBatchBackend(cfg, workdir)


ENTRY = BackendEntry("openai_batch", OpenAIBatchTeacher, create)
