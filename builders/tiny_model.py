"""Tiny local Llama models: a byte-level BPE tokenizer trained on given texts, random weights.

They stand in for real teachers and students offline (tests, the CPU demo). The same inputs give
byte-identical files. Head size (hidden / heads) is kept >= 32, which vLLM's CPU build requires.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from builders.io import atomic_path

logger = logging.getLogger(__name__)

BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"
SYSTEM, USER, ASSISTANT, END = "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK, SYSTEM, USER, ASSISTANT, END]
MIN_HEAD_DIM = 32

# An empty system message gives no system turn. The assistant's content (and its end marker) sits
# inside {% generation %} so `return_assistant_tokens_mask=True` marks the tokens to train on.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}"
    "{% if message['content'] %}" + SYSTEM + "\n{{ message['content'] }}" + END + "\n{% endif %}"
    "{% elif message['role'] == 'user' %}" + USER + "\n{{ message['content'] }}" + END + "\n"
    "{% elif message['role'] == 'assistant' %}" + ASSISTANT + "\n"
    "{% generation %}{{ message['content'] }}" + END + "{% endgeneration %}\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}" + ASSISTANT + "\n{% endif %}"
)


def train_tokenizer(texts: Sequence[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Train a deterministic byte-level BPE tokenizer on `texts`, with special tokens and chat template."""
    if not texts:
        raise ValueError("train_tokenizer: no texts to train on")
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=[SYSTEM, USER, ASSISTANT, END],
        clean_up_tokenization_spaces=False,
        model_max_length=1024,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_llama(
    out_dir: str | Path,
    texts: Sequence[str],
    *,
    vocab_size: int = 1024,
    hidden_size: int = 64,
    num_attention_heads: int = 2,
    num_hidden_layers: int = 2,
    intermediate_size: int = 128,
    max_position_embeddings: int = 1024,
    seed: int = 0,
) -> Path:
    """Build a tiny Llama (tokenizer trained on `texts`, random weights from `seed`) into `out_dir`.

    The model's vocabulary is the trained tokenizer's actual size (at most `vocab_size`). Written
    atomically: `out_dir` is replaced only once the whole folder is complete.
    """
    if hidden_size % num_attention_heads:
        raise ValueError(f"hidden_size {hidden_size} is not a multiple of num_attention_heads")
    if hidden_size // num_attention_heads < MIN_HEAD_DIM:
        raise ValueError(
            f"head size {hidden_size // num_attention_heads} < {MIN_HEAD_DIM} (vLLM's CPU build needs >= 32)"
        )
    out_dir = Path(out_dir)
    tokenizer = train_tokenizer(texts, vocab_size)
    tokenizer.model_max_length = max_position_embeddings
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_attention_heads,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=ids[BOS],
        eos_token_id=[ids[EOS], ids[END]],
        pad_token_id=ids[PAD],
        tie_word_embeddings=False,
        dtype="float32",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.float32).eval()
    generation_config = GenerationConfig(
        bos_token_id=ids[BOS], eos_token_id=[ids[EOS], ids[END]], pad_token_id=ids[PAD], do_sample=True
    )
    with atomic_path(out_dir, is_dir=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        generation_config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _normalize_json_files(tmp)
    logger.info(
        "built tiny llama in %s: vocab %d, hidden %d, layers %d, heads %d, seed %d",
        out_dir,
        len(tokenizer),
        hidden_size,
        num_hidden_layers,
        num_attention_heads,
        seed,
    )
    return out_dir


def _normalize_json_files(folder: Path) -> None:
    """Rewrite JSON files with sorted keys so the folder's bytes depend only on the inputs."""
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        path.write_text(
            json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
        )
