"""Benchmark: training tokens/s and peak memory, packed vs a plain padded `Trainer` run.

    python -m benchmarks.train                       # tiny Llama built on the fly, CPU, float32
    python -m benchmarks.train --model <student> --bf16 --gradient-checkpointing --max-length 4096

Both paths train the same synthetic, long-tailed conversations for the same number of optimizer
steps with the same batch size. "packed": several examples per sequence (block-diagonal attention
via restarting position_ids). "padded" (the baseline): one example per sequence padded to the
longest in the batch, with an attention mask — a plain `Trainer` run without packing. Each path
runs in its own process, so peak memory is its own (CUDA: max allocated; CPU: peak RSS). tokens/s
counts real (non-padding) tokens.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer

from train.config import PhaseConfig, TrainConfig
from train.format import format_rows
from train.packing import PackedCollator, PackedDataset, pack_examples, single_packs
from train.sft import training_args

_FILLER = (
    "the answer is step first then so because we know that value number each total given find explain "
    "reason one two three four five true false yes no option question"
)
WORDS = tuple(_FILLER.split())


def synthetic_rows(n: int, seed: int, max_words: int) -> list[dict[str, str]]:
    """Conversations with long-tailed reply lengths, like explanation traces."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        q_len = rng.randint(8, 60)
        r_len = min(max_words, int(rng.lognormvariate(3.6, 0.8)) + 2)
        rows.append(
            {
                "id": f"b{i:06d}",
                "system_prompt": "" if i % 3 == 0 else "Explain step by step.",
                "question": " ".join(rng.choices(WORDS, k=q_len)) + "?",
                "response": " ".join(rng.choices(WORDS, k=r_len)) + ".",
            }
        )
    return rows


def run_one(args: argparse.Namespace, mode: str) -> dict[str, Any]:
    """Train `args.steps` steps in one mode in this process; return the figures."""
    cuda = torch.cuda.is_available()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    rows = synthetic_rows(args.rows, args.seed, max_words=args.max_length // 2)
    examples, _ = format_rows(tokenizer, rows, max_length=args.max_length, overlong="truncate")
    packs = pack_examples(examples, args.max_length) if mode == "packed" else single_packs(examples)
    dataset = PackedDataset.from_packs(packs)
    kwargs: dict[str, Any] = {"dtype": torch.float32}
    if args.attn_implementation:
        kwargs["attn_implementation"] = args.attn_implementation
    model = AutoModelForCausalLM.from_pretrained(args.model, **kwargs)
    counted = {"tokens": 0, "padded": 0}
    collate = PackedCollator(tokenizer.pad_token_id, packed=mode == "packed")

    def collator(items: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        batch = collate(items)
        counted["tokens"] += sum(len(it["input_ids"]) for it in items)
        counted["padded"] += batch["input_ids"].numel()
        return batch

    with tempfile.TemporaryDirectory() as work:
        cfg = TrainConfig(
            release="-",
            base_model=args.model,
            phases=[PhaseConfig(teacher="bench", epochs=1, learning_rate=1e-4)],
            max_length=args.max_length,
            per_device_batch_size=args.batch_size,
            lr_scheduler="constant",
            bf16=args.bf16,
            gradient_checkpointing=args.gradient_checkpointing,
            logging_steps=args.steps,
        )
        # The pipeline's own arguments, run for a fixed number of steps.
        targs = replace(training_args(cfg, cfg.phases[0], args.seed, Path(work)), max_steps=args.steps)
        trainer = Trainer(model=model, args=targs, train_dataset=dataset, data_collator=collator)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        trainer.train()
        elapsed = time.perf_counter() - started
    peak = (
        torch.cuda.max_memory_allocated()
        if cuda
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    return {
        "mode": mode,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "steps": args.steps,
        "sequences": len(dataset),
        "tokens": counted["tokens"],
        "tokens_per_s": counted["tokens"] / elapsed,
        "padding_fraction": 1 - counted["tokens"] / max(counted["padded"], 1),
        "seconds": elapsed,
        "peak_memory_mib": peak / 2**20,
        "peak_memory_kind": "cuda max allocated" if cuda else "process peak RSS",
    }


def build_default_model(folder: Path, seed: int) -> Path:
    """The tiny CPU student (random weights) the demo uses, built on synthetic text."""
    from builders.tiny_llama import build_tiny_llama

    texts = [f"{r['question']} {r['response']}" for r in synthetic_rows(400, seed, 200)]
    return build_tiny_llama(folder / "tiny-student", texts, seed=seed)


def main(argv: list[str] | None = None) -> int:
    """Run both modes (each in a subprocess) and print tokens/s, peak memory and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="student folder or Hub id (default: a tiny Llama built here)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--rows", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--attn-implementation", default=None)
    parser.add_argument("--mode", choices=["both", "packed", "padded"], default="both")
    args = parser.parse_args(argv)
    if args.mode != "both":
        print(json.dumps(run_one(args, args.mode)))
        return 0
    label = args.model or "tiny Llama built here (random weights)"
    with tempfile.TemporaryDirectory() as tmp:
        if args.model is None:
            args.model = str(build_default_model(Path(tmp), args.seed))
        base = [a for a in (argv if argv is not None else sys.argv[1:]) if a]
        results = {}
        for mode in ("padded", "packed"):
            cmd = [sys.executable, "-m", "benchmarks.train", *base, "--model", args.model, "--mode", mode]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            results[mode] = json.loads(out.strip().splitlines()[-1])
    print(f"model: {label}")
    print(f"steps {args.steps}, batch {args.batch_size}, max_length {args.max_length}, device "
          f"{results['packed']['device']}")  # fmt: skip
    for mode in ("padded", "packed"):
        r = results[mode]
        print(
            f"{mode:>7}: {r['tokens_per_s']:10.1f} tokens/s  {r['tokens']:8d} tokens in {r['seconds']:.2f}s  "
            f"padding {r['padding_fraction']:.1%}  "
            f"peak {r['peak_memory_mib']:.0f} MiB ({r['peak_memory_kind']})"
        )
    ratio = results["packed"]["tokens_per_s"] / results["padded"]["tokens_per_s"]
    print(f"packed / padded tokens/s: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
