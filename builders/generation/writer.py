"""Answers on their way into the generation cache: a shard every `shard_size` answers, and no answer
held in memory longer than `flush_s`, whatever the requests still on the wire do.

The run's loop hands each answer to `CacheWriter.add` as it comes; a thread of the writer's own
writes the held answers once the oldest has waited `flush_s`, so a run stalled on requests that
never answer (or a backend that yields nothing for a while) still caches what has finished, and a
`kill -9` then loses nothing that came more than `flush_s` ago. Shards are compacted (on the run's
thread) once they add up to `cache_pack_bytes`. A write that fails on the thread is raised by the
next `add` or by `close`.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from builders.generation.base import GenResult
from builders.generation.cache import GenerationCache

logger = logging.getLogger(__name__)


class CacheWriter:
    """Buffered writes of one run's answers to `cache`, as `model` at `revision`."""

    def __init__(
        self,
        cache: GenerationCache,
        model: str,
        revision: str,
        *,
        shard_size: int,
        flush_s: float,
        pack_bytes: int,
    ) -> None:
        self.cache, self.model, self.revision = cache, model, revision
        self.shard_size, self.flush_s, self.pack_bytes = shard_size, flush_s, pack_bytes
        self._held: list[GenResult] = []
        self._oldest = 0.0  # when the oldest held answer came
        self._unpacked = 0  # bytes of shards written since the last compaction
        self._closed = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._on_time, name="cache-writer", daemon=True)
        self._thread.start()

    def add(self, result: GenResult) -> None:
        """Hold `result`; write a shard once `shard_size` are held (and compact when due)."""
        with self._cond:
            self._raise()
            if not self._held:
                self._oldest = time.monotonic()
                self._cond.notify()  # the thread now has a deadline to wait for
            self._held.append(result)
            if len(self._held) < self.shard_size:
                return
            self._write()
            if self._unpacked >= self.pack_bytes:
                self.cache.compact(self.pack_bytes)
                self._unpacked = 0

    def _write(self) -> Path | None:
        """Write every held answer as one shard (under the lock); they stay held if it fails."""
        shard = self.cache.write_shard(self._held, self.model, self.revision)
        self._held = []
        self._unpacked += shard.stat().st_size if shard else 0
        return shard

    def _on_time(self) -> None:
        """The thread: write the held answers once the oldest has waited `flush_s`."""
        with self._cond:
            while not self._closed:
                if not self._held:
                    self._cond.wait()
                    continue
                due = self._oldest + self.flush_s - time.monotonic()
                if due > 0:
                    self._cond.wait(due)
                    continue
                try:
                    n = len(self._held)
                    self._write()
                    logger.debug("cached %d answers after %.1fs", n, self.flush_s)
                except BaseException as exc:  # the run's thread raises it
                    self._error = exc
                    return

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def close(self) -> None:
        """Stop the thread and write what is held (whatever ended the run; a write the thread
        failed is tried again here, and raises if it fails again)."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()
        with self._cond:
            self._error = None
            if self._held:
                logger.info("caching %d finished answers", len(self._held))
                self._write()
