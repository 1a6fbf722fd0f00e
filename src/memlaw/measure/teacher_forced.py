"""Per-token teacher-forced losses on answer tokens: the quantity everything else builds on.

Only the hidden states that predict an answer token go through the output head, and the head
runs fused with the loss in chunks (``engine.fused_head``), so vocabulary-sized logits exist
for a few hundred answer tokens at a time and never for the prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from memlaw.data.encoding import Batch, EncodedData, make_batch
from memlaw.engine.fused_head import head_cross_entropy
from memlaw.engine.prefix_cache import PrefixCache


@dataclass
class TokenLosses:
    """Flat per-answer-token values, ordered by item then position."""

    losses: torch.Tensor  # cross-entropy in nats
    correct: torch.Tensor  # argmax == target under teacher forcing
    item_index: torch.Tensor  # which item each token belongs to
    position: torch.Tensor  # index of the token within its item's answer
    copy: torch.Tensor  # which adapter copy produced it (0 unless K adapters train stacked)

    def of_copy(self, copy: int) -> TokenLosses:
        keep = self.copy == copy
        return TokenLosses(*(getattr(self, f)[keep] for f in TOKEN_FIELDS))

    @property
    def probs(self) -> torch.Tensor:
        return torch.exp(-self.losses)


TOKEN_FIELDS = ("losses", "correct", "item_index", "position", "copy")


def answer_token_losses(model: PreTrainedModel, batch: Batch, copies: int = 1) -> TokenLosses:
    """Teacher-forced cross-entropy of every answer token in ``batch`` (differentiable).

    With ``copies`` K > 1 the batch rows are K equal blocks, one per stacked adapter copy.
    """
    hidden = model.get_decoder()(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False
    ).last_hidden_state
    predicts_answer = batch.answer_mask[:, 1:]  # the state at s-1 predicts the token at s
    targets = batch.input_ids[:, 1:][predicts_answer]
    losses, correct = head_cross_entropy(
        model.get_output_embeddings(),
        hidden[:, :-1][predicts_answer],
        targets,
        softcap=getattr(model.config, "final_logit_softcapping", None),
    )
    positions = (batch.answer_mask.cumsum(dim=1) - 1)[:, 1:][predicts_answer]
    items = batch.item_index[:, None].expand_as(predicts_answer)[predicts_answer]
    row_copy = torch.arange(len(batch.input_ids), device=items.device) // (len(batch.input_ids) // copies)
    copy = row_copy[:, None].expand_as(predicts_answer)[predicts_answer]
    return TokenLosses(losses, correct, items, positions, copy)


def batch_token_losses(
    model: PreTrainedModel,
    data: EncodedData,
    indices: Sequence[int],
    *,
    pad_id: int,
    cache: PrefixCache | None = None,
    copies: int = 1,
) -> TokenLosses:
    """``answer_token_losses`` of the items ``indices``, replaying the frozen prefix when cached."""
    batch = make_batch(data, indices, pad_id).to(model.device)
    with cache.replay(indices) if cache is not None else nullcontext():
        return answer_token_losses(model, batch, copies)


@torch.inference_mode()
def evaluate_tokens(
    model: PreTrainedModel,
    data: EncodedData,
    *,
    pad_id: int,
    batch_size: int = 16,
    cache: PrefixCache | None = None,
    copies: int = 1,
) -> TokenLosses:
    """Teacher-forced losses of all answer tokens of ``data`` for every adapter copy, no gradients.

    ``of_copy(j)`` gives copy j's tokens in item order.
    """
    parts = []
    for start in range(0, len(data.items), batch_size):
        indices = list(range(start, min(start + batch_size, len(data.items))))
        parts.append(batch_token_losses(model, data, indices * copies, pad_id=pad_id, cache=cache, copies=copies))
    return TokenLosses(*(torch.cat([getattr(p, f) for p in parts]).cpu() for f in TOKEN_FIELDS))
