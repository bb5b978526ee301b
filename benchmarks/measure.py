"""Wall time and peak memory of a command and every process it starts.

`run_measured` starts the command and polls its process tree every `interval` seconds: the peak of
the tree's summed resident memory (the stage's own process plus its workers, what the machine must
hold at once) and the largest high-water mark (`VmHWM`) of any one of its processes. Polling can
miss a spike shorter than the interval in the summed figure; the high-water marks miss nothing
but the last interval before a process exits.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil

GIB = 2**30


def _hwm(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_measured(
    cmd: list[str], log: Path, *, env: dict[str, str] | None = None, interval: float = 0.1
) -> dict[str, Any]:
    """Run `cmd` (stdout and stderr to `log`); its exit code, wall time and peak memory (GiB)."""
    start = time.perf_counter()
    peak_tree = 0
    hwm: dict[int, int] = {}
    with log.open("w") as out:
        proc = psutil.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        while proc.poll() is None:
            try:
                tree = [proc, *proc.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            total = 0
            for p in tree:
                try:
                    total += p.memory_info().rss
                    hwm[p.pid] = max(hwm.get(p.pid, 0), _hwm(p.pid))
                except psutil.NoSuchProcess:
                    continue
            peak_tree = max(peak_tree, total)
            time.sleep(interval)
    return {
        "rc": proc.returncode,
        "wall_s": round(time.perf_counter() - start, 1),
        "peak_rss_gib": round(peak_tree / GIB, 2),
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
