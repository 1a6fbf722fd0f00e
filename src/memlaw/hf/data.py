"""Memory items as rows for a Hugging Face ``Trainer``: the prompt unsupervised, the answer and
the token that ends it supervised, exactly as ``memlaw train`` encodes them, and their collator."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
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


def collate_rows(rows: Sequence[dict], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """A Trainer's ``data_collator`` for such rows: right-padded ``input_ids`` (``pad_id``), an
    ``attention_mask`` and ``labels`` padded with -100."""
    tensors = [{name: torch.as_tensor(row[name]) for name in ("input_ids", "labels")} for row in rows]
    width = max(len(row["input_ids"]) for row in tensors)

    def pad(values: torch.Tensor, fill: int) -> torch.Tensor:
        return F.pad(values, (0, width - len(values)), value=fill)

    return {
        "input_ids": torch.stack([pad(row["input_ids"], pad_id) for row in tensors]),
        "attention_mask": torch.stack([pad(torch.ones_like(row["input_ids"]), 0) for row in tensors]),
        "labels": torch.stack([pad(row["labels"], IGNORE) for row in tensors]),
    }
