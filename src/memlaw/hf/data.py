"""Memory items as rows for a Hugging Face ``Trainer``: the prompt unsupervised, the answer and
the token that ends it supervised, exactly as ``memlaw train`` encodes them."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase

from memlaw.constants import DEFAULT_SYSTEM_PROMPT
from memlaw.data.encoding import encode_items
from memlaw.data.items import MemoryItem
from memlaw.hf.loss import IGNORE


def supervised_rows(
    items: Sequence[MemoryItem],
    tokenizer: PreTrainedTokenizerBase,
    *,
    prompt_format: str = "chat",
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
    end: bool = True,
) -> list[dict[str, torch.Tensor]]:
    """``{"input_ids", "labels"}`` per item, labels ``-100`` on the prompt. ``end`` supervises each
    answer's end (the chat template's end of turn, or EOS for raw prompts), so the trained model
    stops where its answer stops instead of running on to its token limit."""
    encoded = encode_items(items, tokenizer, prompt_format=prompt_format, system_prompt=system_prompt, end=end)
    rows = []
    for item in encoded.items:
        ids = torch.tensor(item.prompt_ids + item.supervised_ids)
        labels = torch.tensor([IGNORE] * len(item.prompt_ids) + list(item.supervised_ids))
        rows.append({"input_ids": ids, "labels": labels})
    return rows
