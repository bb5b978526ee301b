"""Chat formatting, label masking and packing with the tiny student (no training)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from builders.tiny_llama import build_tiny_llama
from core.config import ParamsError, parse_section
from tests.data.train.support import tokenizer_texts, trace_rows
from train.config import TrainConfig
from train.format import (
    IGNORE_INDEX,
    FormatError,
    format_example,
    format_rows,
    prompt_ids,
    span_labels,
    tokenize_dataset,
)
from train.packing import PackedCollator, PackedDataset, pack_examples, pack_lengths, packing_isolated


@pytest.fixture(scope="module")
def student(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("m") / "student", tokenizer_texts())


@pytest.fixture(scope="module")
def tok(student: Path):
    return AutoTokenizer.from_pretrained(student)


def _segments(position_ids: list[int]) -> list[tuple[int, int]]:
    """[start, end) of each packed example, from where the positions restart at 0."""
    starts = [i for i, p in enumerate(position_ids) if p == 0]
    return list(zip(starts, [*starts[1:], len(position_ids)], strict=True))


def test_labels_cover_only_the_assistant_reply(tok) -> None:
    ex = format_example(
        tok, row_id="r", system_prompt="Be brief.", question="What is two plus two?", response="4"
    )
    assert len(ex.labels) == len(ex.input_ids)
    labelled = [t for t in ex.labels if t != IGNORE_INDEX]
    assert tok.decode(labelled) == "4<|end|>"  # the reply and its end-of-turn marker
    assert tok.decode(labelled, skip_special_tokens=True) == "4"
    first = next(i for i, t in enumerate(ex.labels) if t != IGNORE_INDEX)
    # everything before the reply is the prompt exactly as inference renders it
    assert ex.input_ids[:first] == prompt_ids(tok, "Be brief.", "What is two plus two?")
    assert "Be brief." in tok.decode(ex.input_ids[:first])


def test_empty_system_prompt_gives_no_system_turn(tok) -> None:
    ex = format_example(tok, row_id="r", system_prompt="", question="Hi?", response="Hello.")
    text = tok.decode(ex.input_ids)
    assert "<|system|>" not in text
    assert text.startswith("<s><|user|>\nHi?")


def test_packed_batch_labels_decode_to_exactly_the_responses(tok) -> None:
    rows = trace_rows("tiny-b")
    examples, stats = format_rows(tok, rows, max_length=96)
    assert stats.examples == len(rows) and stats.removed is None
    packs = pack_examples(examples, 96)
    assert len(packs) < len(examples)  # several examples share a sequence
    batch = PackedCollator(tok.pad_token_id)([PackedDataset.from_packs(packs)[i] for i in range(len(packs))])
    assert "attention_mask" not in batch
    by_id = {r["id"]: r["response"] for r in rows}
    decoded = []
    for pack, ids, labels, pos in zip(
        packs, batch["input_ids"], batch["labels"], batch["position_ids"], strict=True
    ):
        assert all(lab in (IGNORE_INDEX, tid) for lab, tid in zip(labels.tolist(), ids.tolist(), strict=True))
        active = [int(t) for t in labels if t != IGNORE_INDEX]
        # the whole row's labels are the pack's responses in order, each closed by its end marker
        assert tok.decode(active) == "".join(by_id[ex.id] + "<|end|>" for ex in pack)
        for start, end in _segments(pos.tolist()):
            seg = [int(t) for t in labels[start:end] if t != IGNORE_INDEX]
            if seg:  # the trailing padding segment carries no labels
                decoded.append(tok.decode(seg, skip_special_tokens=True))
    assert sorted(decoded) == sorted(r["response"] for r in rows)


def test_no_example_cut_across_a_pack_boundary(tok) -> None:
    rows = trace_rows("tiny-b")
    long_row = {**rows[0], "id": "long", "response": " ".join(["The answer is blue."] * 40)}
    max_length = 64
    examples, stats = format_rows(tok, [*rows, long_row], max_length=max_length, overlong="truncate")
    assert stats.truncated == 1
    cut = next(e for e in examples if e.id == "long")
    assert len(cut) == max_length and cut.n_label_tokens > 0
    full = format_example(tok, row_id="long", system_prompt=long_row["system_prompt"],
                          question=long_row["question"], response=long_row["response"])  # fmt: skip
    assert cut.labels == full.labels[:max_length]  # the cut tail's labels are gone, not moved
    packs = pack_examples(examples, max_length)
    placed = [e for p in packs for e in p]
    assert sorted(e.id for e in placed) == sorted(e.id for e in examples)  # each exactly once, whole
    for pack in packs:
        item = PackedDataset.from_packs([pack])[0]
        assert len(item["input_ids"]) <= max_length
        segs = _segments(item["position_ids"])
        assert len(segs) == len(pack)
        for (s, e), ex in zip(segs, pack, strict=True):
            assert item["input_ids"][s:e] == ex.input_ids and item["labels"][s:e] == ex.labels
            assert item["labels"][s] == IGNORE_INDEX  # no example's first token is a target

    dropped, dstats = format_rows(tok, [*rows, long_row], max_length=max_length, overlong="drop")
    assert "long" not in {e.id for e in dropped} and dstats.removed == {"overlong": 1}
    assert dstats.rows_in == dstats.examples + sum(dstats.removed.values())


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_logits_alone_equal_logits_inside_a_pack(student: Path, tok, attn: str) -> None:
    model = AutoModelForCausalLM.from_pretrained(student, attn_implementation=attn, dtype=torch.float32)
    examples, _ = format_rows(tok, trace_rows("tiny-a")[:4], max_length=128)
    assert packing_isolated(model, examples)
    # the check is not vacuous: with a plain attention mask the same pack leaks across examples
    item = PackedDataset.from_packs([examples])[0]
    with torch.no_grad():
        leaky = model(
            input_ids=torch.tensor([item["input_ids"]]),
            position_ids=torch.tensor([item["position_ids"]]),
            attention_mask=torch.ones(1, len(item["input_ids"]), dtype=torch.long),
            use_cache=False,
        ).logits[0]
        second = examples[1]
        alone = model(input_ids=torch.tensor([second.input_ids]), use_cache=False).logits[0]
    start = len(examples[0])
    assert not torch.allclose(leaky[start : start + len(second)], alone, atol=1e-4)


def test_formatting_errors_are_clear(tok) -> None:
    with pytest.raises(FormatError, match="row r: empty response"):
        format_example(tok, row_id="r", system_prompt="", question="q", response="")
    bare = AutoTokenizer.from_pretrained(tok.name_or_path)
    bare.chat_template = None
    with pytest.raises(FormatError, match="no chat template"):
        format_example(bare, row_id="r", system_prompt="", question="q", response="a")


def test_train_config_rejects_bad_phases() -> None:
    base = {"release": "release", "base_model": "m"}
    with pytest.raises(ParamsError, match=r"train\.phases"):
        parse_section(TrainConfig, {**base, "phases": []}, section="train")
    twice = [{"teacher": "a", "epochs": 1, "learning_rate": 1e-3}] * 2
    with pytest.raises(ParamsError, match="more than one phase"):
        parse_section(TrainConfig, {**base, "phases": twice}, section="train")
    with pytest.raises(ParamsError, match=r"train\.overlong"):
        parse_section(TrainConfig, {**base, "phases": twice[:1], "overlong": "split"}, section="train")


@pytest.mark.parametrize(("overlong", "num_proc", "slice_rows"), [("drop", None, 4), ("truncate", 2, 5)])
def test_datasets_map_path_matches_the_in_memory_path(
    tok, overlong: str, num_proc: int | None, slice_rows: int
) -> None:
    rows = trace_rows("tiny-a")
    rows += [
        {**rows[0], "id": "empty", "response": "  "},
        {**rows[1], "id": "long", "response": "blue " * 200},
    ]
    ds = Dataset.from_list(rows)
    tokenized, stats = tokenize_dataset(
        ds, tok, max_length=64, overlong=overlong, num_proc=num_proc, slice_rows=slice_rows
    )
    examples, mem_stats = format_rows(tok, rows, max_length=64, overlong=overlong)
    assert stats.as_dict() == mem_stats.as_dict()
    expected = {"empty_response": 1, "overlong": 1} if overlong == "drop" else {"empty_response": 1}
    assert stats.as_dict()["removed"] == expected
    kept = tokenized.select([i for i, n in enumerate(tokenized["length"]) if n > 0])
    assert kept["id"] == [e.id for e in examples]
    assert kept["input_ids"] == [e.input_ids for e in examples]
    assert [span_labels(r["input_ids"], r["label_start"], r["label_end"]) for r in kept] == [
        e.labels for e in examples
    ]
    assert kept["length"] == [len(e) for e in examples]
    assert tokenized.features["input_ids"].feature.dtype == "uint16"  # the tiny vocabulary fits
    packs = pack_lengths(tokenized["length"], 64)  # dropped rows (length 0) are in no pack
    kept_rows = sorted(i for i, n in enumerate(tokenized["length"]) if n > 0)
    assert sorted(i for p in packs for i in p) == kept_rows
    assert all(sum(tokenized["length"][i] for i in p) <= 64 for p in packs)
    item = PackedDataset(tokenized, packs)[0]
    assert item["input_ids"] == [t for i in packs[0] for t in tokenized["input_ids"][i]]
    by_id = {e.id: e for e in examples}
    assert item["labels"] == [x for i in packs[0] for x in by_id[tokenized["id"][i]].labels]
