"""A local OpenAI-compatible chat server that limits and bills like a paid API (stdlib, 127.0.0.1).

It admits at most `requests` requests and `tokens` tokens per fixed window of `window_s` seconds
(a request's tokens, as OpenAI counts them against a limit: characters of its messages // 4 plus
`max_tokens`); every answer carries `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, and a
request over a limit gets a 429 with `Retry-After` (whole seconds, rounded up) and
`retry-after-ms`, as OpenAI sends them. Answers report `usage`: prompt tokens = characters // 4 + 1
and a completion of 1 to `max_tokens` tokens drawn from the question. With `quota`, a request
after that many answers gets OpenAI's 429 `insufficient_quota`.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def chars(messages: list[dict[str, str]]) -> int:
    return sum(len(m["content"]) for m in messages)


def usage(body: dict[str, Any]) -> tuple[int, int]:
    """(prompt tokens, completion tokens) the server bills for a request body."""
    question = body["messages"][-1]["content"]
    drawn = int(hashlib.sha256(question.encode()).hexdigest()[:8], 16)
    return chars(body["messages"]) // 4 + 1, 1 + drawn % body["max_tokens"]


def duration(seconds: float) -> str:
    """A reset time as OpenAI writes it (`20ms`, `1.5s`, `1m3s`)."""
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:.3f}s" if minutes else f"{rest:.3f}s"


class PaidServer:
    """The server; its log: `received` (every request's question), `throttled` (429s), `answered`."""

    def __init__(
        self,
        requests: int | None = None,
        tokens: int | None = None,
        window_s: float = 1.0,
        delay_s: float = 0.01,
        quota: int | None = None,
    ) -> None:
        self.limits = {"requests": requests, "tokens": tokens}
        self.window_s, self.delay_s, self.quota = window_s, delay_s, quota
        self.t0 = time.monotonic()
        self.window = -1
        self.used = {"requests": 0, "tokens": 0}
        self.received: list[str] = []
        self.received_at: list[float] = []  # seconds since the server started, per request
        self.throttled = 0
        self.answered: list[str] = []
        self.prompt_tokens = self.completion_tokens = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, headers, data = server.handle(body)
                if status == 200:
                    time.sleep(server.delay_s)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.01,), daemon=True).start()

    def handle(self, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) of one request."""
        question = body["messages"][-1]["content"]
        cost = {"requests": 1, "tokens": chars(body["messages"]) // 4 + body["max_tokens"]}
        with self.lock:
            self.received.append(question)
            now = time.monotonic() - self.t0
            self.received_at.append(now)
            window = int(now // self.window_s)
            if window != self.window:
                self.window, self.used = window, {"requests": 0, "tokens": 0}
            reset = (window + 1) * self.window_s - now
            if self.quota is not None and len(self.answered) >= self.quota:
                error = {"message": "You exceeded your current quota", "type": "insufficient_quota",
                         "code": "insufficient_quota"}  # fmt: skip
                return 429, {}, json.dumps({"error": error}).encode()
            over = [k for k, n in self.limits.items() if n is not None and self.used[k] + cost[k] > n]
            if not over:
                for k in self.used:
                    self.used[k] += cost[k]
            headers = {}
            for k, n in self.limits.items():
                if n is not None:
                    headers[f"x-ratelimit-limit-{k}"] = str(n)
                    headers[f"x-ratelimit-remaining-{k}"] = str(max(0, n - self.used[k]))
                    headers[f"x-ratelimit-reset-{k}"] = duration(reset)
            if over:
                self.throttled += 1
                headers["retry-after"] = str(math.ceil(reset))
                headers["retry-after-ms"] = str(round(reset * 1000))
                error = {
                    "message": f"Rate limit reached for {over[0]}",
                    "type": over[0],
                    "code": "rate_limit_exceeded",
                }
                return 429, headers, json.dumps({"error": error}).encode()
            prompt, completion = usage(body)
            self.answered.append(question)
            self.prompt_tokens += prompt
            self.completion_tokens += completion
        answer = " ".join(["word"] * completion)
        data = {"id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                             "finish_reason": "length" if completion == body["max_tokens"] else "stop"}],
                "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                          "total_tokens": prompt + completion}}  # fmt: skip
        return 200, headers, json.dumps(data).encode()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
