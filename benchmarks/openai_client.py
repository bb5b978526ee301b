"""Benchmark: requests/s the `openai` teacher backend sustains against servers that answer at once.

    python -m benchmarks.openai_client [--requests 20000] [--concurrency 16] [--servers 1 4]

Each server is a raw asyncio protocol in its own process (uvloop when installed) that answers every
POST with one fixed small chat completion over keep-alive HTTP/1.1, so the client is what is
measured. For each server count, `OpenAIBackend.generate()` runs `--requests` requests with
`concurrency` per URL; the baseline, in the same run against the same servers, is a bare aiohttp
loop with as many connections (post, read and parse the JSON, nothing else), so the ratio is the
backend's overhead. The two alternate for `--rounds` rounds; medians are printed. The servers
share the machine's cores with the client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from builders.generation.base import GenRequest, GenResult
from builders.generation.openai_backend import OpenAIBackend
from builders.generation.registry import parse_teacher

BODY = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 1},
    }
).encode()
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(BODY),
    BODY,
)
MESSAGES = [{"role": "user", "content": "What is 2 + 2? Explain step by step."}]


class _Answer(asyncio.Protocol):
    """Answers every complete request in the buffer (headers and Content-Length body) with ANSWER."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        buf, answers = self.buf + data, 0
        while (end := buf.find(b"\r\n\r\n")) >= 0:
            head = buf[:end].lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
            if len(buf) < end + 4 + length:
                break
            buf, answers = buf[end + 4 + length :], answers + 1
        self.buf = buf
        if answers:
            self.transport.write(ANSWER * answers)


def _serve(ports: Any) -> None:
    """One server process: listen on a free port, report it, answer forever."""

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Answer, "127.0.0.1", 0, backlog=4096)
        ports.put(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


def start_servers(n: int) -> tuple[list[Any], list[str]]:
    """`n` server processes and their base URLs."""
    ctx = mp.get_context("spawn")
    ports = ctx.Queue()
    procs = [ctx.Process(target=_serve, args=(ports,), daemon=True) for _ in range(n)]
    for p in procs:
        p.start()
    return procs, [f"http://127.0.0.1:{ports.get(timeout=60)}/v1" for _ in procs]


async def _bare(urls: list[str], concurrency: int, n: int) -> int:
    """The baseline: `concurrency` connections per URL, each posting and parsing the JSON it gets back."""
    body = {"model": "bench", "messages": MESSAGES, "max_tokens": 16}
    left, ok = iter(range(n)), 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def worker(url: str) -> None:
            nonlocal ok
            for _ in left:
                async with session.post(f"{url}/chat/completions", json=body) as resp:
                    ok += bool(json.loads(await resp.read())["choices"])

        await asyncio.gather(*(worker(u) for u in urls for _ in range(concurrency)))
    return ok


def _backend(urls: list[str], concurrency: int, n: int) -> int:
    """`OpenAIBackend.generate()` over `n` requests; completions counted."""
    cfg = parse_teacher(
        {"name": "bench", "backend": "openai", "model": "bench", "base_urls": urls,
         "concurrency": concurrency, "max_retries": 0, "timeout_s": 30.0}
    )  # fmt: skip
    reqs = [GenRequest(str(i), str(i), MESSAGES, 16, i) for i in range(n)]
    backend = OpenAIBackend(cfg)
    try:
        return sum(isinstance(r, GenResult) for r in backend.generate(reqs))
    finally:
        backend.close()


def _timed(run: Callable[[], int], n: int) -> float:
    """Requests/s of `run` (which answers `n` requests)."""
    start = time.perf_counter()
    ok = run()
    wall = time.perf_counter() - start
    if ok != n:
        raise SystemExit(f"only {ok} of {n} requests answered")
    return n / wall


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=20_000)
    p.add_argument("--concurrency", type=int, default=16, help="in-flight requests per base URL")
    p.add_argument("--servers", type=int, nargs="+", default=[1, 4], help="base URL counts to measure")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the medians are reported")
    args = p.parse_args(argv)
    print(f"{os.cpu_count()} cores, load average before: {os.getloadavg()}")
    procs, urls = start_servers(max(args.servers))
    try:
        n, c = args.requests, args.concurrency
        _timed(lambda: _backend(urls[:1], c, 500), 500)  # warm-up: imports, first connections
        for k in args.servers:
            rates: list[tuple[float, float]] = []
            for _ in range(args.rounds):
                rates.append((_timed(lambda k=k: asyncio.run(_bare(urls[:k], c, n)), n),
                              _timed(lambda k=k: _backend(urls[:k], c, n), n)))  # fmt: skip
            bare, backend = (statistics.median(r) for r in zip(*rates, strict=True))
            print(f"{k} base URL{'s' if k > 1 else ''}, concurrency {c} per URL, {n} requests: "
                  f"backend generate() {backend:,.0f} requests/s, bare aiohttp loop {bare:,.0f} requests/s, "
                  f"ratio {backend / bare:.2f} (medians of {args.rounds} rounds)")  # fmt: skip
    finally:
        for proc in procs:
            proc.terminate()
            proc.join()
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
