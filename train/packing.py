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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from train.format import IGNORE_INDEX, Example, span_labels


@dataclass(frozen=True)
class Packs:
    """A packing plan: pack k holds examples `members[offsets[k]:offsets[k + 1]]`, in order."""

    offsets: np.ndarray
    members: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, k: int) -> np.ndarray:
        return self.members[self.offsets[k] : self.offsets[k + 1]]

    def to_lists(self) -> list[list[int]]:
        """Each pack's example indices as a list."""
        return [self[k].tolist() for k in range(len(self))]

    @classmethod
    def of(cls, packs: Sequence[Sequence[int]]) -> Packs:
        """A plan from lists of example indices."""
        offsets = np.zeros(len(packs) + 1, dtype=np.int64)
        np.cumsum([len(p) for p in packs], out=offsets[1:])
        return cls(offsets, np.array([i for p in packs for i in p], dtype=np.int64))

    @classmethod
    def singles(cls, lengths: Sequence[int] | np.ndarray) -> Packs:
        """One example per pack (the no-packing path), empty examples left out."""
        members = np.flatnonzero(np.asarray(lengths) > 0)
        return cls(np.arange(members.size + 1, dtype=np.int64), members.astype(np.int64))


def pack_plan(lengths: Sequence[int] | np.ndarray, max_length: int) -> Packs:
    """Whole examples grouped into packs of total length <= `max_length` (best-fit decreasing).

    Examples are placed longest first (ties: lower index first), each into the pack with the least
    room that still fits it, else into a new pack; of packs with equal room, into the one that
    reached that room last. Deterministic for a given input; compiled (numba) over arrays, so a
    plan for millions of examples holds a few arrays and takes seconds. Raises if an example is
    longer than `max_length` (fit examples with `format.fit_to_length` first); skips empty ones.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    if lengths.size and lengths[order[0]] > max_length:
        first = int(order[0])
        raise ValueError(
            f"example {first} has {int(lengths[first])} tokens, more than max_length={max_length}"
        )
    from train.packing_kernels import best_fit  # numba only where a plan is made (not beside vLLM)

    pack_of, packs = best_fit(order, lengths, max_length)
    placed = order[pack_of[order] >= 0]  # placing order, which is each pack's order of its examples
    members = placed[np.argsort(pack_of[placed], kind="stable")]
    offsets = np.zeros(packs + 1, dtype=np.int64)
    np.cumsum(np.bincount(pack_of[placed], minlength=packs), out=offsets[1:])
    return Packs(offsets, members)


def pack_lengths(lengths: Sequence[int] | np.ndarray, max_length: int) -> list[list[int]]:
    """`pack_plan` as lists of example indices."""
    return pack_plan(lengths, max_length).to_lists()


def pack_examples(examples: Sequence[Example], max_length: int) -> list[list[Example]]:
    """Whole examples grouped into packs of at most `max_length` tokens (see `pack_plan`)."""
    return [[examples[i] for i in p] for p in pack_lengths([len(e) for e in examples], max_length)]


def single_packs(examples: Sequence[Example]) -> list[list[Example]]:
    """One example per sequence (the no-packing path)."""
    return [[ex] for ex in examples if len(ex) > 0]


class PackedDataset(torch.utils.data.Dataset):
    """Packs over a source of examples: a list of `Example`s, or a tokenized `datasets.Dataset`
    (`input_ids` and the labelled span `label_start`, `label_end`: `format.tokenize_dataset`).

    Each item is the flat input ids, labels and position ids restarting at 0 per example.
    """

    def __init__(self, source: Any, packs: Packs | Sequence[Sequence[int]]) -> None:
        self.source = source
        self.packs = packs if isinstance(packs, Packs) else Packs.of(packs)

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

    def _rows(self, members: np.ndarray) -> list[tuple[list[int], list[int]]]:
        if isinstance(self.source, list):
            return [(ex.input_ids, ex.labels) for ex in (self.source[int(j)] for j in members)]
        rows = self.source[members.tolist()]  # one read of the pack's rows
        spans = zip(rows["input_ids"], rows["label_start"], rows["label_end"], strict=True)
        return [(list(ids), span_labels(ids, start, end)) for ids, start, end in spans]

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        input_ids: list[int] = []
        labels: list[int] = []
        position_ids: list[int] = []
        for ids, labs in self._rows(self.packs[i]):
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
