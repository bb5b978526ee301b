"""Wall time and peak memory of a command and every process it starts.

`run_measured` starts the command and polls its process tree every `interval` seconds: the peak of
the tree's summed resident memory (the stage's own process plus its workers, what the machine must
hold at once), the peak of its summed anonymous memory (`RssAnon` + `RssShmem`: resident memory
less the pages of mapped files, which the kernel can drop and read back, and which processes that
map one file count each), and the largest high-water mark (`VmHWM`) of any one of its processes.
Polling can miss a spike shorter than the interval in the summed figures; the high-water marks
miss nothing but the last interval before a process exits.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

GIB = 2**30


def _status(pid: int) -> dict[str, int]:
    """The memory lines of /proc/PID/status, in bytes (empty when the process is gone)."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "RssAnon", "RssShmem"):
                out[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


def run_measured(
    cmd: list[str], log: Path, *, env: dict[str, str] | None = None, interval: float = 0.1
) -> dict[str, Any]:
    """Run `cmd` (stdout and stderr to `log`); its exit code, wall time and peak memory (GiB)."""
    start = time.perf_counter()
    peak_tree = peak_anon = 0
    hwm: dict[int, int] = {}
    with log.open("w") as out:
        proc = psutil.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        while proc.poll() is None:
            try:
                tree = [proc, *proc.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            total = anon = 0
            for p in tree:
                try:
                    total += p.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
                status = _status(p.pid)
                anon += status.get("RssAnon", 0) + status.get("RssShmem", 0)
                hwm[p.pid] = max(hwm.get(p.pid, 0), status.get("VmHWM", 0))
            peak_tree, peak_anon = max(peak_tree, total), max(peak_anon, anon)
            time.sleep(interval)
    return {
        "rc": proc.returncode,
        "wall_s": round(time.perf_counter() - start, 1),
        "peak_rss_gib": round(peak_tree / GIB, 2),
        "peak_anon_gib": round(peak_anon / GIB, 2),
        "peak_process_hwm_gib": round(max(hwm.values(), default=0) / GIB, 2),
        "processes": len(hwm),
    }


def tail(log: Path, lines: int = 20) -> str:
    """The last lines of a log (for a failed command's message)."""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def load() -> str:
    """The machine's load averages and cores, for a timing's context."""
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


SPIN = "x = 0\nfor i in range({n}):\n    x += i * i\n"


def cpu_ceiling(workers: int, n: int = 20_000_000) -> float:
    """How many times one process's throughput `workers` processes get on this machine right now:
    the same pure-Python loop run alone, then `workers` at once (on a shared VM, steal time keeps
    this below `workers`; a parallel stage's speed-up cannot beat it)."""

    def spin(k: int) -> float:
        start = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-c", SPIN.format(n=n)]) for _ in range(k)]
        for p in procs:
            p.wait()
        return time.perf_counter() - start

    return workers * spin(1) / spin(workers)
