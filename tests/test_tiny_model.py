"""The tiny local Llama: deterministic files, a working chat template, and real vLLM generation."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from builders.tiny_llama import TinyModelSpec, build_tiny_llama
from tests.test_traces_common import texts as sample_texts


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "model", sample_texts(), vocab_size=512)


def test_same_inputs_give_identical_files(tiny_dir: Path, tmp_path: Path) -> None:
    again = build_tiny_llama(tmp_path / "again", sample_texts(), vocab_size=512)
    names = sorted(p.name for p in tiny_dir.iterdir())
    assert names == sorted(p.name for p in again.iterdir())
    assert "model.safetensors" in names and "generation_config.json" in names
    for name in names:
        assert (tiny_dir / name).read_bytes() == (again / name).read_bytes(), name
    other_seed = build_tiny_llama(tmp_path / "seed1", sample_texts(), vocab_size=512, seed=1)
    assert (other_seed / "model.safetensors").read_bytes() != (tiny_dir / "model.safetensors").read_bytes()


def test_head_size_below_32_is_refused() -> None:
    with pytest.raises(ValueError, match="head size"):
        TinyModelSpec(hidden_size=64, num_attention_heads=4)


def test_chat_template_and_assistant_mask(tiny_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    conv = [
        {"role": "system", "content": "explain step by step"},
        {"role": "user", "content": "the fox?"},
        {"role": "assistant", "content": "the dog"},
    ]
    text = tok.apply_chat_template(conv[:2], tokenize=False, add_generation_prompt=True)
    assert text == "<s><|system|>\nexplain step by step<|end|>\n<|user|>\nthe fox?<|end|>\n<|assistant|>\n"
    no_system = tok.apply_chat_template(
        [{"role": "system", "content": ""}, conv[1]], tokenize=False, add_generation_prompt=True
    )
    assert "<|system|>" not in no_system
    enc = tok.apply_chat_template(conv, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    trained = [i for i, m in zip(enc["input_ids"], enc["assistant_masks"], strict=True) if m]
    assert tok.decode(trained) == "the dog<|end|>"
    assert tok.pad_token == "<pad>" and tok.eos_token == "</s>" and tok.bos_token == "<s>"


@pytest.mark.slow
def test_vllm_loads_and_generates(tiny_dir: Path) -> None:
    from vllm import LLM, SamplingParams

    from core.vllm_env import guard_llvmlite

    guard_llvmlite()  # this process has imported numba in the dedup tests
    llm = LLM(model=str(tiny_dir), max_model_len=256, seed=0, dtype="float32")
    try:
        conv = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "the fox?"}]
        outs = llm.chat([conv], SamplingParams(max_tokens=8, temperature=1.0, seed=3), use_tqdm=False)
        assert len(outs) == 1
        out = outs[0]
        assert out.prompt.startswith("<s><|system|>\nbe brief<|end|>\n<|user|>\nthe fox?")
        assert 1 <= len(out.outputs[0].token_ids) <= 8
        assert out.outputs[0].finish_reason in {"length", "stop"}
    finally:
        del llm
