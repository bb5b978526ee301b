"""Wall time and peak memory of a command and every process it starts.

`run_measured` starts the command and polls its process tree every `interval` seconds: the peak of
the tree's summed resident memory (the stage's own process plus its workers, what the machine must
hold at once, but a page that several processes share, such as a forked worker's copy-on-write
pages of its parent or a file they all map, counts once per process), the peak of its summed
proportional set size (PSS, `/proc/PID/smaps_rollup`: a shared page split among its sharers, so
the sum is the memory the tree holds), and the largest high-water mark (`VmHWM`) of any one of its
processes.
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


def _kib_line(path: str, key: str) -> int:
    """The `key:` line of a /proc memory file, in bytes (0 when the process is gone)."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_measured(
    cmd: list[str], log: Path, *, env: dict[str, str] | None = None, interval: float = 0.1
) -> dict[str, Any]:
    """Run `cmd` (stdout and stderr to `log`); its exit code, wall time and peak memory (GiB)."""
    start = time.perf_counter()
    peak_tree = peak_pss = 0
    hwm: dict[int, int] = {}
    with log.open("w") as out:
        proc = psutil.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        while proc.poll() is None:
            try:
                tree = [proc, *proc.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            total = pss = 0
            for p in tree:
                try:
                    total += p.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
                pss += _kib_line(f"/proc/{p.pid}/smaps_rollup", "Pss")
                hwm[p.pid] = max(hwm.get(p.pid, 0), _kib_line(f"/proc/{p.pid}/status", "VmHWM"))
            peak_tree, peak_pss = max(peak_tree, total), max(peak_pss, pss)
            time.sleep(interval)
    return {
        "rc": proc.returncode,
        "wall_s": round(time.perf_counter() - start, 1),
        "peak_rss_gib": round(peak_tree / GIB, 2),
        "peak_pss_gib": round(peak_pss / GIB, 2),
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
