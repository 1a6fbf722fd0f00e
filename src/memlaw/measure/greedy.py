"""Batched greedy decoding from each item's prompt, as long as its answer."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

from memlaw.data.encoding import EncodedData


@torch.inference_mode()
def greedy_answers(
    model: PreTrainedModel, data: EncodedData, *, pad_id: int, batch_size: int = 32, copies: int = 1
) -> list[list[list[int]]]:
    """For every adapter copy and item, the first len(answer) tokens greedy decoding produces.

    Decoding never stops at EOS: an early EOS is itself an error at that position, and the
    comparison needs a token for every answer position. With K stacked copies each batch
    holds the same items K times, one block per copy.
    """
    outputs: list[list[list[int]]] = [[] for _ in range(copies)]
    for start in range(0, len(data.items), batch_size):
        chunk = data.items[start : start + batch_size]
        rows = chunk * copies
        width = max(len(item.prompt_ids) for item in rows)
        input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for row, item in enumerate(rows):  # left padding: every prompt ends where decoding starts
            input_ids[row, width - len(item.prompt_ids) :] = torch.tensor(item.prompt_ids)
            attention[row, width - len(item.prompt_ids) :] = 1
        new_tokens = max(len(item.answer_ids) for item in rows)
        generated = model.generate(
            input_ids=input_ids.to(model.device),
            attention_mask=attention.to(model.device),
            do_sample=False,
            max_new_tokens=new_tokens,
            eos_token_id=[],  # an empty list turns stopping off; None would fall back to the model's EOS
            pad_token_id=pad_id,
        )[:, width:].cpu()
        for row, item in enumerate(rows):
            outputs[row // len(chunk)].append(generated[row, : len(item.answer_ids)].tolist())
    return outputs
