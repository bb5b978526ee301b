"""Benchmark: tokens/s of the vLLM teacher backend, against baselines measured in the same run.

    python -m benchmarks.teachers [--model models/tiny-a] [--prompts 1024] [--mean-tokens 60] [--rounds 5]
    python -m benchmarks.teachers --model Qwen/Qwen2.5-7B-Instruct --vllm-bench   # on a GPU

Answer lengths follow a realistic spread: each request's max_tokens is drawn from a seeded
log-normal (mean `--mean-tokens`, capped at `--max-tokens`); the tiny random-weight models
rarely emit EOS, so most answers are exactly that long. Every mode sends the same prompts with the
same per-request seeds, so all three generate the same tokens (the printed counts show it):

    (a) backend    `VLLMBackend.generate` (continuous: up to max_in_flight requests in the engine)
    (b) batched    the old batch-and-wait shape: `LLM.chat` per `--batch-size` requests
    (c) reference  one `LLM.generate` over all prompts, as token ids (already rendered)

Modes run in interleaved rounds (`--rounds`, order rotated each round); each mode's best round is
reported (the least disturbed on a shared machine), with every round's wall times and the load
average. With `--vllm-bench`, also the `vllm bench throughput` CLI for the
same model and mean input/output lengths (subprocess; needs the `vllm` distribution's CLI, which
the CPU build's package name breaks). `models/tiny-a` is built by `dvc repro tiny_models` (or
`python -m builders.tiny_models --params params.yaml --sample sample/flan --out models`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from builders.generation.base import GenRequest, GenResult
from builders.generation.registry import parse_teacher
from builders.generation.vllm_backend import VLLMBackend, make_llm
from core.chat import build_messages

_FILLER = "explain the answer step by step because the question asks why a fox jumps over a lazy dog"
WORDS = _FILLER.split()


def _vllm_bench(model: str, input_len: int, output_len: int, n: int, extra: list[str]) -> float | None:
    exe = shutil.which("vllm")
    if exe is None:
        print("vllm bench throughput: no `vllm` CLI on PATH; skipped")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        lens = ["--input-len", str(input_len), "--output-len", str(output_len), "--num-prompts", str(n)]
        cmd = [exe, "bench", "throughput", "--model", model, *lens, "--output-json", str(out), *extra]
        print("running:", " ".join(cmd))
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not out.exists():
            print(f"vllm bench throughput failed (rc {proc.returncode}): {proc.stderr[-800:]}")
            return None
        data = json.loads(out.read_text())
        return float(data["tokens_per_second"])


def answer_lengths(n: int, mean: float, cap: int, seed: int, sigma: float = 1.0) -> list[int]:
    """`n` seeded log-normal lengths with mean `mean` (before the cap), in [1, cap]."""
    rng = np.random.default_rng(seed)
    draws = rng.lognormal(np.log(mean) - sigma**2 / 2, sigma, n)
    return np.clip(np.rint(draws), 1, cap).astype(int).tolist()


def make_requests(lengths: list[int]) -> list[GenRequest]:
    """One chat request per length, prompts of a few sizes, a distinct seed each."""
    questions = [" ".join(WORDS[i % 7 :] * (1 + i % 3)) for i in range(len(lengths))]
    return [
        GenRequest(str(i), str(i), build_messages("explain step by step", q), n, i)
        for i, (q, n) in enumerate(zip(questions, lengths, strict=True))
    ]


def _tokens(outs: list[Any]) -> tuple[int, int]:
    """(prompt, completion) tokens of `GenResult`s or vLLM `RequestOutput`s."""
    if outs and isinstance(outs[0], GenResult):
        return sum(r.prompt_tokens for r in outs), sum(r.completion_tokens for r in outs)
    return sum(len(o.prompt_token_ids) for o in outs), sum(len(o.outputs[0].token_ids) for o in outs)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="models/tiny-a")
    p.add_argument("--prompts", type=int, default=1024)
    p.add_argument("--mean-tokens", type=float, default=60.0, help="mean of the log-normal answer lengths")
    p.add_argument("--max-tokens", type=int, default=256, help="cap of the answer lengths")
    p.add_argument("--batch-size", type=int, default=256, help="batch of the old batch-and-wait baseline")
    p.add_argument("--max-in-flight", type=int, default=4096)
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (best reported)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-model-len", type=int, default=1024)
    p.add_argument("--dtype", default="auto")
    p.add_argument("--tensor-parallel-size", type=int, default=1)
    p.add_argument("--vllm-bench", action="store_true", help="also run `vllm bench throughput`")
    args = p.parse_args(argv)
    print(f"load average before: {os.getloadavg()}")
    cfg = parse_teacher(
        {
            "name": "bench",
            "model": args.model,
            "max_model_len": args.max_model_len,
            "dtype": args.dtype,
            "tensor_parallel_size": args.tensor_parallel_size,
            "max_in_flight": args.max_in_flight,
            "sampling": {"temperature": 1.0, "top_p": 1.0, "max_tokens": args.max_tokens, "seed": args.seed},
        }
    )
    llm = make_llm(cfg)
    backend = VLLMBackend(cfg, llm=llm)
    lengths = answer_lengths(args.prompts, args.mean_tokens, args.max_tokens, args.seed)
    reqs = make_requests(lengths)
    print(f"{len(reqs)} prompts, max_tokens mean {np.mean(lengths):.1f}, median {np.median(lengths):.0f}, "
          f"max {max(lengths)}")  # fmt: skip

    from vllm import SamplingParams, TokensPrompt

    def params() -> list[SamplingParams]:
        return [SamplingParams(temperature=1.0, top_p=1.0, max_tokens=r.max_tokens, seed=r.seed)
                for r in reqs]  # fmt: skip

    def batched() -> list[Any]:
        ps, convs, n = params(), [r.messages for r in reqs], args.batch_size
        return [o for i in range(0, len(reqs), n)
                for o in llm.chat(convs[i : i + n], ps[i : i + n], use_tqdm=False)]  # fmt: skip

    list(backend.generate(reqs[:8]))  # warm-up
    token_ids = [o.prompt_token_ids for o in llm.chat([r.messages for r in reqs], params(), use_tqdm=False)]
    modes: dict[str, Callable[[], list[Any]]] = {
        "(a) backend, continuous": lambda: list(backend.generate(reqs)),
        f"(b) batch-and-wait, LLM.chat per {args.batch_size}": batched,
        "(c) reference, one LLM.generate": lambda: llm.generate(
            [TokensPrompt(prompt_token_ids=t) for t in token_ids], params(), use_tqdm=False
        ),
    }
    walls: dict[str, list[float]] = {m: [] for m in modes}
    counts: dict[str, tuple[int, int]] = {}
    names = list(modes)
    for k in range(args.rounds):  # rotate the order each round, so load drift favours no mode
        load = os.getloadavg()[0]
        for m in names[k % len(names) :] + names[: k % len(names)]:
            t0 = time.perf_counter()
            outs = modes[m]()
            walls[m].append(time.perf_counter() - t0)
            counts[m] = _tokens(outs)
        print(f"round {k + 1} (load {load:.2f}): " + ", ".join(f"{m[:3]} {walls[m][-1]:.2f}s" for m in names))
    rates: dict[str, list[float]] = {m: [sum(counts[m]) / w for w in walls[m]] for m in names}
    for m in names:
        ptok, ctok = counts[m]
        wall = min(walls[m])
        print(f"{m}: {ptok} prompt + {ctok} completion tokens, best of {args.rounds} rounds {wall:.2f}s: "
              f"{(ptok + ctok) / wall:.1f} total tokens/s, {ctok / wall:.1f} completion tok/s")  # fmt: skip
    a, b, c = (rates[m] for m in names)
    for label, x in (("(a) backend", a), ("(b) batch-and-wait", b)):
        per_round = [round(r / q, 3) for r, q in zip(x, c, strict=True)]
        print(f"ratio {label} / (c) reference: {max(x) / max(c):.3f} best of rounds (per round {per_round})")
    t0 = time.perf_counter()
    llm._preprocess_chat([r.messages for r in reqs])  # what LLM.chat renders; (c) gets token ids
    render = time.perf_counter() - t0
    print(f"rendering the {len(reqs)} chats alone (paid by (a) and (b), not by (c)): {render:.2f}s")
    print(f"load average after: {os.getloadavg()}")
    if args.vllm_bench:
        ptok, ctok = counts["(a) backend, continuous"]
        del llm, backend, modes
        input_len, output_len = max(1, round(ptok / len(reqs))), max(1, round(ctok / len(reqs)))
        ref = _vllm_bench(args.model, input_len, output_len, args.prompts, ["--dtype", args.dtype])
        if ref:
            print(f"vllm bench throughput ({input_len} in / {output_len} out): {ref:.1f} total tokens/s")
            print(f"ratio (a) backend / vllm bench throughput: {max(a) / ref:.3f}")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
