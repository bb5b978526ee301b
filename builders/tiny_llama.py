"""Tiny local Llama models: a byte-level BPE tokenizer trained on given texts, random weights.

They stand in for real teachers and students offline (tests, the CPU demo). The same inputs give
byte-identical files. Head size (hidden / heads) is kept >= 32, which vLLM's CPU build requires.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import torch
from pydantic import Field, field_validator, model_validator
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from core.config import StageConfig
from core.errors import InputError
from core.io import atomic_path
from core.models import save_tokenizer

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
    spec: TinyModelSpec | None = None,
    *,
    vocab_size: int = 1024,
    max_position_embeddings: int = 1024,
    seed: int = 0,
) -> Path:
    """Build a tiny Llama of `spec`'s sizes (tokenizer trained on `texts`, random weights from
    `seed`) into `out_dir`.

    The model's vocabulary is the trained tokenizer's actual size (at most `vocab_size`). Written
    atomically: `out_dir` is replaced only once the whole folder is complete.
    """
    spec = spec or TinyModelSpec()
    out_dir = Path(out_dir)
    tokenizer = train_tokenizer(texts, vocab_size)
    tokenizer.model_max_length = max_position_embeddings
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    tokens = {"bos_token_id": ids[BOS], "eos_token_id": [ids[EOS], ids[END]], "pad_token_id": ids[PAD]}
    sizes = spec.model_dump(exclude={"seed_offset"})
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=max_position_embeddings,
        num_key_value_heads=spec.num_attention_heads,
        tie_word_embeddings=False,
        dtype="float32",
        **sizes,
        **tokens,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.float32).eval()
    generation_config = GenerationConfig(**tokens, do_sample=True)
    with atomic_path(out_dir, is_dir=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        generation_config.save_pretrained(tmp)
        save_tokenizer(tokenizer, tmp)
        _normalize_json_files(tmp)
    logger.info("built tiny llama in %s: vocab %d, %s, seed %d", out_dir, len(tokenizer), sizes, seed)
    return out_dir


def _normalize_json_files(folder: Path) -> None:
    """Rewrite JSON files with sorted keys so the folder's bytes depend only on the inputs."""
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        path.write_text(
            json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
        )


TEXT_COLUMNS = ("inputs", "targets")


class TinyModelSpec(StageConfig):
    """Sizes of one tiny model; its seed is `base.seed + seed_offset`."""

    hidden_size: int = Field(64, gt=0)
    num_attention_heads: int = Field(2, gt=0)
    num_hidden_layers: int = Field(2, gt=0)
    intermediate_size: int = Field(128, gt=0)
    seed_offset: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _head_size(self) -> TinyModelSpec:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("hidden_size must be a multiple of num_attention_heads")
        if self.hidden_size // self.num_attention_heads < MIN_HEAD_DIM:
            raise ValueError(f"head size hidden_size/num_attention_heads must be >= {MIN_HEAD_DIM}")
        return self


class TinyModelsConfig(StageConfig):
    """The `tiny_models:` section."""

    vocab_size: int = Field(1024, ge=300)
    max_position_embeddings: int = Field(1024, ge=64)
    max_texts: int = Field(20000, gt=0, description="at most this many sample texts train the tokenizer")
    models: dict[str, TinyModelSpec]

    @field_validator("models")
    @classmethod
    def _names(cls, v: dict[str, TinyModelSpec]) -> dict[str, TinyModelSpec]:
        if not v:
            raise ValueError("at least one model")
        for name in v:
            if not name or "/" in name or name.startswith("."):
                raise ValueError(f"bad model name {name!r}")
        return v


def read_sample_texts(sample: str | Path, max_texts: int) -> list[str]:
    """Texts (`inputs` and `targets`) of every Parquet file under `sample`, in a stable order."""
    sample = Path(sample)
    files = sorted(sample.rglob("*.parquet")) if sample.is_dir() else [sample]
    if not files:
        raise InputError(f"{sample}: no Parquet files found")
    texts: list[str] = []
    for path in files:
        cols = [c for c in TEXT_COLUMNS if c in pq.read_schema(path).names]
        if not cols:
            logger.warning("%s: no %s column, skipped", path, " or ".join(TEXT_COLUMNS))
            continue
        df = pl.read_parquet(path, columns=cols)
        for col in cols:
            texts.extend(t for t in df[col].cast(pl.String).to_list() if t)
    if not texts:
        raise InputError(f"{sample}: no text in columns {TEXT_COLUMNS}")
    texts = sorted(set(texts))
    if len(texts) > max_texts:
        step = len(texts) / max_texts
        texts = [texts[int(i * step)] for i in range(max_texts)]
    return texts


def build_all(cfg: TinyModelsConfig, seed: int, sample: str | Path, out: str | Path) -> list[Path]:
    """Build every model of `cfg` under `out`; returns their folders."""
    texts = read_sample_texts(sample, cfg.max_texts)
    logger.info("training tokenizers on %d texts from %s", len(texts), sample)
    paths = []
    for name, spec in sorted(cfg.models.items()):
        paths.append(
            build_tiny_llama(
                Path(out) / name,
                texts,
                spec,
                vocab_size=cfg.vocab_size,
                max_position_embeddings=cfg.max_position_embeddings,
                seed=seed + spec.seed_offset,
            )
        )
    return paths
