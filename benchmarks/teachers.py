"""Benchmark: tokens/s of the vLLM teacher backend, against a baseline measured in the same run.

    python -m benchmarks.teachers [--model models/tiny-a] [--prompts 64] [--max-tokens 64]
    python -m benchmarks.teachers --model Qwen/Qwen2.5-7B-Instruct --vllm-bench   # on a GPU

Baselines: raw `LLM.generate` over the same token prompts (always), and with `--vllm-bench` the
`vllm bench throughput` CLI for the same model, input/output lengths and prompt count (subprocess;
needs the `vllm` distribution's CLI, which the CPU build's package name breaks).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from builders.teachers.base import GenRequest
from builders.teachers.config import TeacherConfig
from builders.teachers.vllm_backend import VLLMBackend, make_llm
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


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="models/tiny-a")
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--max-model-len", type=int, default=1024)
    p.add_argument("--dtype", default="auto")
    p.add_argument("--tensor-parallel-size", type=int, default=1)
    p.add_argument("--vllm-bench", action="store_true", help="also run `vllm bench throughput`")
    args = p.parse_args(argv)
    cfg = TeacherConfig.model_validate(
        {
            "name": "bench",
            "model": args.model,
            "max_model_len": args.max_model_len,
            "dtype": args.dtype,
            "tensor_parallel_size": args.tensor_parallel_size,
            "sampling": {"temperature": 1.0, "top_p": 1.0, "max_tokens": args.max_tokens, "seed": 0},
        }
    )
    llm = make_llm(cfg)
    backend = VLLMBackend(cfg, batch_size=args.prompts, llm=llm)
    reqs = [
        GenRequest(
            str(i),
            str(i),
            build_messages("explain step by step", " ".join(WORDS[i % 7 :] * 3)),
            args.max_tokens,
            i,
        )
        for i in range(args.prompts)
    ]
    list(backend.generate(reqs[:2]))  # warm-up
    t0 = time.perf_counter()
    results = list(backend.generate(reqs))
    wall = time.perf_counter() - t0
    ptok = sum(r.prompt_tokens for r in results)
    ctok = sum(r.completion_tokens for r in results)
    ours = (ptok + ctok) / wall
    print(f"backend: {len(results)} prompts, {ptok} prompt + {ctok} completion tokens in {wall:.2f}s")
    print(f"backend: {ours:.1f} total tokens/s, {ctok / wall:.1f} completion tokens/s")

    from vllm import SamplingParams, TokensPrompt

    input_len = max(1, round(ptok / len(results)))
    output_len = max(1, round(ctok / len(results)))
    base_prompts = [TokensPrompt(prompt_token_ids=[(7 * i + j) % 200 + 10 for j in range(input_len)])
                    for i in range(args.prompts)]  # fmt: skip
    sp = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=output_len, ignore_eos=True, seed=0)
    t0 = time.perf_counter()
    outs = llm.generate(base_prompts, sp, use_tqdm=False)
    base_wall = time.perf_counter() - t0
    base_tok = sum(len(o.prompt_token_ids or []) + len(o.outputs[0].token_ids) for o in outs)
    base = base_tok / base_wall
    print(f"baseline raw LLM.generate ({input_len} in / {output_len} out): {base:.1f} total tokens/s")
    print(f"ratio backend / raw LLM.generate: {ours / base:.3f}")
    if args.vllm_bench:
        del llm, backend
        ref = _vllm_bench(args.model, input_len, output_len, args.prompts, ["--dtype", args.dtype])
        if ref:
            print(f"vllm bench throughput: {ref:.1f} total tokens/s")
            print(f"ratio backend / vllm bench throughput: {ours / ref:.3f}")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
