"""Packed (padding-free) forward passes of a BERT-family sequence classifier.

A micro-batch of pairs is 2 × batch_size sequences of different lengths. Padded, every sequence
is stretched to the longest (HH-RLHF at 256 tokens: 1.8 × the real tokens in random batches).
Packed, the sequences are laid end to end into rows of at most `capacity` tokens (first-fit
decreasing; the training loop passes the micro-batch's longest sequence, so a row never computes
more attention than the padded batch would — rows of `max_length` were measured slower on CPU,
where the masked attention of a 512-token row costs more than the padding it saves), and three things make each row compute exactly what the sequences alone would:

- position ids restart at 0 at each sequence's start (BERT's absolute position embeddings);
- a block-diagonal attention mask: a token attends only to the tokens of its own sequence
  (the row's tail of padding attends only to itself, so no softmax row is empty);
- the score is read at each sequence's own first token ([CLS]) and passed through the model's
  pooler, dropout and classifier — what `BertForSequenceClassification` does at position 0.

So a packed forward is the padded forward up to float summation order (tested: scores and a
fine-tuning run's losses agree to float noise); the optimisation, the batches and the loss are
unchanged, only the tensor layout is. Implemented for `model_type == "bert"` (MiniLM, the package's
fine-tuned RM; also LoRA-wrapped); another architecture is refused with a clear error.
"""
from __future__ import annotations

import numpy as np
import torch

PACKABLE = ("bert",)


class PackingError(ValueError):
    """The model's architecture has no packed forward here."""


def check_packable(model) -> None:
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    kind = getattr(inner.config, "model_type", None)
    if kind not in PACKABLE or not hasattr(inner, "classifier"):
        raise PackingError(f"packed batches are implemented for {PACKABLE} sequence classifiers, not {kind!r}: "
                         "train this model without packing / --padding-free (length-grouped padded batches)")


def pack_rows(lengths: list[int], capacity: int) -> list[list[int]]:
    """Sequence indices per row, first-fit decreasing, each row's total length ≤ capacity
    (a sequence longer than capacity gets a row of its own)."""
    rows: list[list[int]] = []
    fill: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda k: -lengths[k]):
        for r, f in enumerate(fill):
            if f + lengths[i] <= capacity:
                rows[r].append(i)
                fill[r] += lengths[i]
                break
        else:
            rows.append([i])
            fill.append(lengths[i])
    return rows


def packed_inputs(ids: list[list[int]], capacity: int, pad_id: int, dtype=torch.float32) -> dict:
    """Tensors of one packed forward: input_ids / position_ids / token_type_ids [R, L], an additive
    block-diagonal mask [R, 1, L, L] and `starts` ([N, 2]: row and offset of each sequence's first token)."""
    rows = pack_rows([len(s) for s in ids], capacity)
    width = max(sum(len(ids[i]) for i in row) for row in rows)
    inp = np.full((len(rows), width), pad_id, np.int64)
    pos = np.zeros((len(rows), width), np.int64)
    seg = np.arange(width)[None, :].repeat(len(rows), 0) + width      # padding: a segment of its own per token
    starts = np.zeros((len(ids), 2), np.int64)
    for r, row in enumerate(rows):
        o = 0
        for i in row:
            n = len(ids[i])
            inp[r, o:o + n], pos[r, o:o + n], seg[r, o:o + n] = ids[i], np.arange(n), i
            starts[i] = (r, o)
            o += n
    same = torch.as_tensor(seg[:, :, None] == seg[:, None, :])
    mask = torch.zeros(same.shape, dtype=dtype).masked_fill_(~same, torch.finfo(dtype).min)[:, None]
    return {"input_ids": torch.as_tensor(inp), "position_ids": torch.as_tensor(pos),
            "token_type_ids": torch.zeros_like(torch.as_tensor(inp)), "attention_mask": mask,
            "starts": torch.as_tensor(starts)}


def packed_scores(model, ids: list[list[int]], capacity: int, pad_id: int, device) -> torch.Tensor:
    """r of every sequence in `ids`, [N] float, from packed rows (module docstring)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    b = packed_inputs(ids, capacity, pad_id)
    starts = b.pop("starts")
    b = {k: v.to(device) for k, v in b.items()}
    h = inner.base_model(**b).last_hidden_state                     # [R, L, H]
    first = h[starts[:, 0].to(device), starts[:, 1].to(device)]    # [N, H]: each sequence's [CLS]
    pooled = inner.base_model.pooler(first[:, None, :])             # the pooler reads position 0
    return inner.classifier(inner.dropout(pooled))[:, 0].float()
