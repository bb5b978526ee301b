"""A stage whose `dvc` died stops: nobody would record what it goes on to do.

`kill -9` of `dvc` alone leaves the stage it ran going (it is reparented); a second `dvc repro`
would then start a second copy beside it. Under DVC (`DVC_STAGE` set) `core.stage.run_stage`
watches the `dvc` process above the stage (or, when none is found, the stage's parent). Once it is
gone, the watch calls the handlers a stage registered with `stop_on_orphan` (a generation run stops
sending and keeps what comes back), or, when none is registered, interrupts the main thread; the
stage then stops with one line (`Orphaned`).
"""

from __future__ import annotations

import _thread
import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator

import psutil

from core.errors import PipelineError

logger = logging.getLogger(__name__)

POLL_S = 0.5


class Orphaned(PipelineError):
    """The dvc process that ran this stage is gone."""


def _is_dvc(proc: psutil.Process) -> bool:
    """Whether `proc` runs the dvc CLI (`dvc ...`, `python .../dvc ...` or `python -m dvc ...`)."""
    try:
        argv = proc.cmdline()
    except psutil.Error:
        return False
    head = [os.path.basename(a) for a in argv[:2]]
    return "dvc" in head or argv[1:3] == ["-m", "dvc"]


def dvc_process() -> psutil.Process | None:
    """The nearest `dvc` process above this one; else this one's parent (None if there is none)."""
    me = psutil.Process()
    try:
        parents = me.parents()
    except psutil.Error:
        return None
    return next((p for p in parents if _is_dvc(p)), parents[0] if parents else None)


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class ParentWatch:
    """Polls `proc`; when it is gone, runs the registered handlers once (or interrupts the main thread)."""

    def __init__(self, proc: psutil.Process, poll_s: float = POLL_S) -> None:
        self.proc = proc
        self.label = f"{'dvc' if _is_dvc(proc) else 'parent'} process (pid {proc.pid})"
        self.gone = threading.Event()
        self._handlers: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, args=(poll_s,), name="parent-watch", daemon=True)

    def start(self) -> ParentWatch:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()

    def _watch(self, poll_s: float) -> None:
        while not self._stop.wait(poll_s):
            if _alive(self.proc):
                continue
            with self._lock:
                self.gone.set()
                handlers = list(self._handlers)
            logger.warning("the %s that ran this stage is gone: stopping", self.label)
            for handler in handlers:
                handler()
            if not handlers:
                _thread.interrupt_main()
            return

    def add(self, fn: Callable[[], None]) -> Callable[[], None]:
        """Register `fn` (called at once when already gone); returns its remover."""
        with self._lock:
            gone = self.gone.is_set()
            self._handlers.append(fn)
        if gone:
            fn()

        def remove() -> None:
            with self._lock:
                if fn in self._handlers:
                    self._handlers.remove(fn)

        return remove

    def error(self, what: str) -> Orphaned:
        return Orphaned(f"the {self.label} that ran this stage is gone; {what}: run `dvc repro` again")


_watch: ParentWatch | None = None


@contextlib.contextmanager
def watching() -> Iterator[ParentWatch | None]:
    """Watch the dvc process above this stage for the block (only when DVC runs it)."""
    global _watch
    proc = dvc_process() if os.environ.get("DVC_STAGE") is not None else None
    if proc is None or _watch is not None:
        yield None
        return
    _watch = ParentWatch(proc).start()
    try:
        yield _watch
    finally:
        _watch.close()
        _watch = None


def orphaned() -> bool:
    """Whether the dvc process that ran this stage is gone."""
    return _watch is not None and _watch.gone.is_set()


def stop_on_orphan(fn: Callable[[], None]) -> Callable[[], None]:
    """Until the returned remover is called, `fn()` (called from the watch's thread) is how the stage
    stops when its dvc is gone, instead of an interrupt of the main thread."""
    return _watch.add(fn) if _watch is not None else lambda: None


def raise_if_orphaned(what: str) -> None:
    """Stop with one line (`what` says what was kept) when the dvc process is gone."""
    if _watch is not None and _watch.gone.is_set():
        raise _watch.error(what)
