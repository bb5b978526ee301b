"""A local Batch API (stdlib, 127.0.0.1) whose work is done by the real `vllm run-batch` (or, with
no model, by canned answers: `answer: <question>`).

It serves what the `openai` SDK calls for batches: `POST /v1/files` (multipart upload),
`GET /v1/files/{id}` and `/v1/files/{id}/content`, `POST /v1/batches`, `GET /v1/batches/{id}` and
`GET /v1/batches` (newest first, `limit` and `after`). A worker thread runs the batches created so
far with one `python -m vllm.entrypoints.openai.run_batch -i <input> -o <output> --model <model>`
(the same JSONL format as OpenAI's) and publishes each batch's output file. A request whose question contains
`FAILONCE` goes to the error file the first time it is seen, as OpenAI's error file has it
(`response: null`, `error: {code, message}`); one with `FAILALWAYS` every time. `created` logs
every batch created: (batch id, custom ids); `questions` maps a custom id to its question. An
answer to a question containing `EMPTYONCE` has empty content the first time, one with
`EMPTYALWAYS` every time; with `served` set, every answer names that model.
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import os
import queue
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

FAIL_ONCE, FAIL_ALWAYS = "FAILONCE", "FAILALWAYS"
EMPTY_ONCE, EMPTY_ALWAYS = "EMPTYONCE", "EMPTYALWAYS"


def run_batch(model: Path, max_model_len: int, inp: Path, out: Path, log: Path) -> None:
    """`vllm run-batch` of `inp` into `out` on the CPU."""
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1"}
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.run_batch", "-i", str(inp), "-o", str(out),
           "--model", str(model), "--max-model-len", str(max_model_len), "--dtype", "float32",
           "--seed", "0"]  # fmt: skip
    with open(log, "ab") as fh:
        subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, check=True)


def canned(line: str) -> str:
    """The output line of a request line, answered without a model."""
    req = json.loads(line)
    question = req["body"]["messages"][-1]["content"]
    body = {"id": "chatcmpl-1", "object": "chat.completion", "model": req["body"]["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": f"answer: {question}"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}  # fmt: skip
    out = {"id": "batch_req_1", "custom_id": req["custom_id"], "error": None,
           "response": {"status_code": 200, "request_id": "req-1", "body": body}}  # fmt: skip
    return json.dumps(out)


class BatchServer:
    """Files and batches in memory and under `workdir`; one batch runs at a time."""

    def __init__(self, model: Path | None, workdir: Path, max_model_len: int = 256) -> None:
        self.model, self.max_model_len = model, max_model_len
        self.served: str | None = None  # the model name every answer gives (None: as answered)
        self.emptied: set[str] = set()  # custom ids answered empty once
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.created: list[tuple[str, list[str]]] = []
        self.questions: dict[str, str] = {}  # custom id -> the request's question
        self.failed_once: set[str] = set()
        self.ids = itertools.count(1)
        self.lock = threading.Lock()
        self.work: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def send(self, status: int, data: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                parts = url.path.strip("/").split("/")  # v1, files|batches, [id], [content]
                with server.lock:
                    if parts[1] == "files" and len(parts) == 4:
                        self.send(
                            200, Path(server.files[parts[2]]["path"]).read_bytes(), "application/octet-stream"
                        )
                    elif parts[1] == "files":
                        self.send(200, json.dumps(server.public(server.files[parts[2]])).encode())
                    elif parts[1] == "batches" and len(parts) == 3:
                        self.send(200, json.dumps(server.batches[parts[2]]).encode())
                    else:
                        self.send(200, json.dumps(server.listing(parse_qs(url.query))).encode())

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path.endswith("/files"):
                    obj = server.upload(self.headers["Content-Type"], body)
                else:
                    obj = server.create(json.loads(body))
                self.send(200, json.dumps(obj).encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True).start()
        self.worker = threading.Thread(target=self._work, daemon=True)
        self.worker.start()

    @staticmethod
    def public(file: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in file.items() if k != "path"}

    def _file(self, data: bytes, filename: str, purpose: str) -> dict[str, Any]:
        fid = f"file-{next(self.ids)}"
        path = self.workdir / fid
        path.write_bytes(data)
        file = {"id": fid, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                "filename": filename, "purpose": purpose, "status": "processed",
                "path": str(path)}  # fmt: skip
        self.files[fid] = file
        return file

    def upload(self, ctype: str, body: bytes) -> dict[str, Any]:
        """A multipart/form-data upload (`file`, `purpose`)."""
        msg = email.parser.BytesParser(policy=email.policy.default).parsebytes(
            f"Content-Type: {ctype}\r\n\r\n".encode() + body
        )
        fields = {p.get_param("name", header="content-disposition"): p for p in msg.iter_parts()}
        data = fields["file"].get_payload(decode=True)
        with self.lock:
            file = self._file(
                data, fields["file"].get_filename() or "upload.jsonl", fields["purpose"].get_content()
            )
        return self.public(file)

    def create(self, req: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            bid = f"batch_{next(self.ids)}"
            lines = Path(self.files[req["input_file_id"]]["path"]).read_text().splitlines()
            reqs = [json.loads(line) for line in lines]
            self.created.append((bid, [r["custom_id"] for r in reqs]))
            self.questions.update({r["custom_id"]: r["body"]["messages"][-1]["content"] for r in reqs})
            batch = {"id": bid, "object": "batch", "endpoint": req["endpoint"], "errors": None,
                     "input_file_id": req["input_file_id"], "completion_window": req["completion_window"],
                     "status": "validating", "output_file_id": None, "error_file_id": None,
                     "created_at": int(time.time()), "metadata": req.get("metadata"),
                     "request_counts": {"total": len(lines), "completed": 0, "failed": 0}}  # fmt: skip
            self.batches[bid] = batch
        self.work.put(bid)
        return batch

    def listing(self, query: dict[str, list[str]]) -> dict[str, Any]:
        batches = sorted(self.batches.values(), key=lambda b: int(b["id"].split("_")[1]), reverse=True)
        if "after" in query:
            ids = [b["id"] for b in batches]
            batches = batches[ids.index(query["after"][0]) + 1 :]
        limit = int(query.get("limit", ["20"])[0])
        page = batches[:limit]
        return {"object": "list", "data": page, "has_more": len(batches) > limit,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None}  # fmt: skip

    def _work(self) -> None:
        """Run the batches created so far together in one `vllm run-batch` (its start is the slow
        part), then publish each batch's own output and error files."""
        while (first := self.work.get()) is not None:
            time.sleep(0.5)  # the rest of a run's files
            bids = [first]
            while not self.work.empty() and (bid := self.work.get()) is not None:
                bids.append(bid)
            keep: dict[str, list[str]] = {}
            errors: dict[str, list[dict[str, Any]]] = {}
            for bid in bids:
                keep[bid], errors[bid] = self._split(bid)
            lines = [line for bid in bids for line in keep[bid]]
            outputs: dict[str, str] = {}
            if lines and self.model is None:
                outputs = {json.loads(line)["custom_id"]: self._alter(canned(line)) for line in lines}
            elif lines:
                inp, out = self.workdir / f"{first}.in.jsonl", self.workdir / f"{first}.out.jsonl"
                inp.write_text("\n".join(lines) + "\n")
                run_batch(self.model, self.max_model_len, inp, out, self.workdir / "run_batch.log")
                outs = [o for o in out.read_text().splitlines() if o.strip()]
                outputs = {json.loads(o)["custom_id"]: self._alter(o) for o in outs}
            with self.lock:
                for bid in bids:
                    batch = self.batches[bid]
                    ids = [json.loads(line)["custom_id"] for line in keep[bid]]
                    output = "".join(outputs[i] + "\n" for i in ids).encode()
                    batch["output_file_id"] = self._file(output, f"{bid}_output.jsonl", "batch_output")["id"]
                    if errors[bid]:
                        data = "".join(json.dumps(e) + "\n" for e in errors[bid]).encode()
                        batch["error_file_id"] = self._file(data, f"{bid}_error.jsonl", "batch_output")["id"]
                    batch["request_counts"].update(completed=len(ids), failed=len(errors[bid]))
                    batch["status"] = "completed"

    def _alter(self, output: str) -> str:
        """An output line with the served name and the empty answers this server gives."""
        out = json.loads(output)
        body = out["response"]["body"]
        key = out["custom_id"]
        question = self.questions[key]
        once = EMPTY_ONCE in question and key not in self.emptied
        if once or EMPTY_ALWAYS in question:
            self.emptied.add(key)
            body["choices"][0]["message"]["content"] = ""
            body["choices"][0]["finish_reason"] = "stop"
        if self.served is not None:
            body["model"] = self.served
        return json.dumps(out)

    def _split(self, bid: str) -> tuple[list[str], list[dict[str, Any]]]:
        """(the lines of batch `bid` the model runs, the error lines of those that fail)."""
        with self.lock:
            batch = self.batches[bid]
            batch["status"] = "in_progress"
            lines = Path(self.files[batch["input_file_id"]]["path"]).read_text().splitlines()
        keep, errors = [], []
        for line in lines:
            req = json.loads(line)
            question = req["body"]["messages"][-1]["content"]
            once = FAIL_ONCE in question and req["custom_id"] not in self.failed_once
            if once or FAIL_ALWAYS in question:
                self.failed_once.add(req["custom_id"])
                error = {"code": "server_error", "message": "the model failed"}
                errors.append({"id": f"batch_req_{next(self.ids)}", "custom_id": req["custom_id"],
                               "response": None, "error": error})  # fmt: skip
            else:
                keep.append(line)
        return keep, errors

    def close(self) -> None:
        self.work.put(None)
        self.httpd.shutdown()
        self.httpd.server_close()
