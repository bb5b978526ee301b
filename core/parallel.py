"""Work spread over processes, with a bounded number of tasks in flight.

`ProcessPool` starts `workers` spawned processes once (spawn, not fork: polars and pyarrow hold
threads a fork would copy mid-state) and reuses them for every `imap` call. Each worker's polars and
Arrow thread pools get its share of the cores (`THREAD_VARS`, read when a process imports them), so
the workers do not oversubscribe the cores they split. With one worker it runs each task in this
process, so small inputs and tests pay no start-up. At most `in_flight` tasks are
submitted ahead of the one consumed, so the results waiting in memory stay bounded whatever the
input's size.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, TypeVar

THREAD_VARS = ("POLARS_MAX_THREADS", "OMP_NUM_THREADS")  # polars; Arrow's CPU pool
T = TypeVar("T")
R = TypeVar("R")


def cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worker_count(workers: int | None) -> int:
    """`workers`, or every core when it is None."""
    return max(1, workers if workers is not None else cores())


class ProcessPool:
    """A reusable pool of `workers` processes (none when `workers` is 1)."""

    def __init__(self, workers: int | None) -> None:
        self.workers = worker_count(workers)
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> ProcessPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the processes (pending tasks are cancelled)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"))
            share = {k: str(max(1, cores() // self.workers)) for k in THREAD_VARS if k not in os.environ}
            os.environ.update(share)
            try:  # a spawned worker starts within `submit`, with this environment
                for _ in range(self.workers):
                    self._pool.submit(int)
            finally:
                for k in share:
                    del os.environ[k]
        return self._pool

    def imap(
        self, fn: Callable[[T], R], items: Iterable[T], *, ordered: bool = True, in_flight: int | None = None
    ) -> Iterator[R]:
        """`fn(item)` for every item: in input order (`ordered`) or as each finishes.

        `fn` must be a module-level function and items picklable. An exception in a task is raised
        here, and the tasks not started yet are cancelled. One worker, or a list of at most one
        item, runs in this process.
        """
        if self.workers == 1 or (isinstance(items, list) and len(items) <= 1):
            yield from map(fn, items)
            return
        limit = in_flight or 2 * self.workers
        pool = self._executor()
        pending: deque[Future[R]] = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                while len(pending) >= limit:
                    yield from _take(pending, ordered)
            while pending:
                yield from _take(pending, ordered)
        except BaseException:
            for f in pending:
                f.cancel()
            raise


def _take(pending: deque[Future[Any]], ordered: bool) -> Iterator[Any]:
    """Yield the first pending result (`ordered`) or every finished one."""
    if ordered:
        yield pending.popleft().result()
        return
    done, _ = wait(pending, return_when=FIRST_COMPLETED)
    for f in [f for f in pending if f in done]:
        pending.remove(f)
        yield f.result()
