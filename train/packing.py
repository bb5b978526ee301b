"""Packing several examples into one sequence, without attention or positions leaking across them.

Examples are placed whole into packs of at most `max_length` tokens (best-fit decreasing), so no
example is ever cut across a pack boundary. The collator returns `input_ids`, `labels` and
`position_ids` that restart at 0 for every example, and no `attention_mask`. In transformers 5,
`masking_utils.create_causal_mask` reads restarting `position_ids` (when no 2D attention mask is
given) as packed sequences and builds a block-diagonal causal mask for the eager, sdpa and flex
attention implementations; flash-attention derives variable-length boundaries from the same
`position_ids`, but only for a batch of one row, so with flash attention the collator flattens
each batch into a single row (`flatten=True`). Rotary positions restart too, so an example sees
exactly what it would see alone. The detection only happens without a KV cache: the model must
run with `use_cache=False` (the Trainer sets it).

Models whose attention does not go through `create_causal_mask` (or that ignore `position_ids`)
would let a packed example attend to the ones before it. `packing_isolated` checks a model with
a few forward passes before training; the train stage refuses to pack a model that fails it
(set `train.packing: false` to train it one example per row with padding and an attention mask).

The first token of each example is a prompt token (label -100), so the shifted loss never asks one
example's last token to predict the next example's first.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

import torch

from train.format import IGNORE_INDEX, Example


def pack_lengths(lengths: Sequence[int], max_length: int) -> list[list[int]]:
    """Group indices of whole examples into packs of total length <= `max_length` (best-fit decreasing).

    Deterministic for a given input. Raises if an example is longer than `max_length` (fit
    examples with `format.fit_to_length` first); skips empty ones.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    packs: list[list[int]] = []
    # free capacity -> stack of pack indices with that capacity; `caps` holds the non-empty keys sorted.
    by_cap: dict[int, list[int]] = {}
    caps: list[int] = []
    for i in order:
        n = lengths[i]
        if n > max_length:
            raise ValueError(f"example {i} has {n} tokens, more than max_length={max_length}")
        if n == 0:
            continue
        j = bisect.bisect_left(caps, n)
        if j < len(caps):
            cap = caps[j]
            idx = by_cap[cap].pop()
            if not by_cap[cap]:
                del by_cap[cap]
                caps.pop(j)
            packs[idx].append(i)
        else:
            idx = len(packs)
            packs.append([i])
            cap = max_length
        new_cap = cap - n
        if new_cap > 0:
            if new_cap not in by_cap:
                by_cap[new_cap] = []
                bisect.insort(caps, new_cap)
            by_cap[new_cap].append(idx)
    return packs


def pack_examples(examples: Sequence[Example], max_length: int) -> list[list[Example]]:
    """Whole examples grouped into packs of at most `max_length` tokens (see `pack_lengths`)."""
    return [[examples[i] for i in p] for p in pack_lengths([len(e) for e in examples], max_length)]


def single_packs(examples: Sequence[Example]) -> list[list[Example]]:
    """One example per sequence (the no-packing path)."""
    return [[ex] for ex in examples if len(ex) > 0]


def _ids_labels(item: Any) -> tuple[list[int], list[int]]:
    if isinstance(item, Example):
        return item.input_ids, item.labels
    return list(item["input_ids"]), list(item["labels"])


class PackedDataset(torch.utils.data.Dataset):
    """Packs over an indexable source of examples (`Example`s or rows of a tokenized `datasets.Dataset`).

    Each item is the flat input ids, labels and position ids restarting at 0 per example.
    """

    def __init__(self, source: Any, packs: Sequence[Sequence[int]]) -> None:
        self.source = source
        self.packs = [list(p) for p in packs]

    @classmethod
    def from_packs(cls, packs: Sequence[Sequence[Example]]) -> PackedDataset:
        """A dataset over packs of in-memory examples."""
        flat = [ex for p in packs for ex in p]
        index, n = [], 0
        for p in packs:
            index.append(list(range(n, n + len(p))))
            n += len(p)
        return cls(flat, index)

    def __len__(self) -> int:
        return len(self.packs)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        input_ids: list[int] = []
        labels: list[int] = []
        position_ids: list[int] = []
        for j in self.packs[i]:
            ids, labs = _ids_labels(self.source[j])
            input_ids += ids
            labels += labs
            position_ids += list(range(len(ids)))
        return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids}


class PackedCollator:
    """Batches packs for the model.

    - `packed=True`: packs padded to the longest in the batch, restarting `position_ids`, no
      attention mask; padding forms its own segment at the end, labelled -100 (eager, sdpa, flex).
    - `flatten=True` (with `packed`): the whole batch concatenated into one row of shape
      [1, total] with no padding — what flash-attention needs, since transformers reads packed
      `position_ids` for flash attention only at batch size 1.
    - `packed=False`: one example per row, padded, with an attention mask (the no-packing path).
    """

    def __init__(self, pad_token_id: int, *, packed: bool = True, flatten: bool = False) -> None:
        self.pad_token_id = pad_token_id
        self.packed = packed
        self.flatten = flatten and packed

    def __call__(self, items: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        if self.flatten:
            flat = {k: [x for it in items for x in it[k]] for k in ("input_ids", "labels", "position_ids")}
            return {k: torch.tensor([v]) for k, v in flat.items()}
        width = max(len(it["input_ids"]) for it in items)
        ids, labels, pos, mask = [], [], [], []
        for it in items:
            n = len(it["input_ids"])
            pad = width - n
            ids.append(it["input_ids"] + [self.pad_token_id] * pad)
            labels.append(it["labels"] + [IGNORE_INDEX] * pad)
            pos.append(it["position_ids"] + list(range(pad)))
            mask.append([1] * n + [0] * pad)
        batch = {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels)}
        if self.packed:
            batch["position_ids"] = torch.tensor(pos)
        else:
            batch["attention_mask"] = torch.tensor(mask)
        return batch


@torch.no_grad()
def packing_isolated(
    model: Any, examples: Sequence[Example], *, flatten: bool = False, atol: float = 1e-4
) -> bool:
    """True when each example's logits inside packed batches equal its logits alone.

    Checks a batch of two packs (the examples, then the same reversed, so the shorter row is
    padded), or the flattened single row that `flatten=True` gives.
    """
    if len(examples) < 2:
        raise ValueError("need at least two examples to check packing")
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        packs = [list(examples), list(reversed(examples[1:]))]
        ds = PackedDataset.from_packs(packs)
        collate = PackedCollator(0, flatten=flatten)
        batch = {k: v.to(device) for k, v in collate([ds[0], ds[1]]).items() if k != "labels"}
        logits = model(**batch, use_cache=False).logits.float()
        rows = [logits[0], logits[0, len(ds[0]["input_ids"]) :]] if flatten else [logits[0], logits[1]]
        for row, pack in zip(rows, packs, strict=True):
            offset = 0
            for ex in pack:
                ids = torch.tensor([ex.input_ids], device=device)
                alone = model(input_ids=ids, use_cache=False).logits[0].float()
                if not torch.allclose(alone, row[offset : offset + len(ex)], atol=atol, rtol=1e-3):
                    return False
                offset += len(ex)
        return True
    finally:
        model.train(was_training)
