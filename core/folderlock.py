"""One writer per folder: an OS lock (`flock`) on a file in the folder, released when its holder dies.

The lock file also records who holds it (pid, host, start time, command), so a second writer that
finds the folder busy names the holder. The lock is the kernel's, not the file's: a holder killed
with `kill -9` leaves the file behind, but not the lock. Within one process the lock is shared
(opening the same folder twice does not wait on itself).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from core.errors import PipelineError

logger = logging.getLogger(__name__)

LOCK_NAME = ".writer.lock"  # listed in .dvcignore: never part of a DVC out
POLL_S = 0.2
LOG_EVERY_S = 30.0


class FolderBusy(PipelineError):
    """Another process writes the folder."""


_held: dict[Path, list[int]] = {}  # folder -> [fd, holders in this process]


def holder_of(folder: Path) -> str:
    """Who holds (or last held) the lock of `folder`, in words."""
    try:
        info = json.loads((folder / LOCK_NAME).read_text(encoding="utf-8"))
        return f"pid {info['pid']} on {info['host']}, started {info['started']} ({info['command']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (no record of it)"


def _record(fd: int) -> None:
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "command": " ".join([os.path.basename(sys.executable), *sys.argv])[:300],
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)


def acquire(folder: Path, what: str, wait_s: float) -> None:
    """Hold `folder`'s lock; while another process holds it wait up to `wait_s`, then `FolderBusy`."""
    key = folder.resolve()
    if key in _held:
        _held[key][1] += 1
        return
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    start = time.monotonic()
    logged: float | None = None
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - start
                if waited >= wait_s:
                    raise FolderBusy(
                        f"{folder}: {what} is in use by {holder_of(folder)}; waited {waited:.0f}s. "
                        "Only one run may write it: let that run finish or stop it, then run again"
                    ) from None
                if logged is None or time.monotonic() - logged >= LOG_EVERY_S:
                    logged = time.monotonic()
                    logger.warning(
                        "%s: %s is in use by %s; waiting up to %.0fs", folder, what, holder_of(folder), wait_s
                    )
                time.sleep(POLL_S)
        _record(fd)
    except BaseException:
        os.close(fd)
        raise
    _held[key] = [fd, 1]


def release(folder: Path) -> None:
    """Give up one hold of `folder`'s lock (the last one unlocks it)."""
    key = folder.resolve()
    entry = _held.get(key)
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] == 0:
        del _held[key]
        os.close(entry[0])  # closing the descriptor releases the flock
