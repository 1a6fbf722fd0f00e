"""Per-token teacher-forced losses on answer tokens: the quantity everything else builds on.

Only the hidden states that predict an answer token go through the output head, so the
vocabulary-sized logits exist for the ℓ supervised tokens and not for the whole prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from memlaw.data.encoding import Batch, EncodedData, make_batch


@dataclass
class TokenLosses:
    """Flat per-answer-token values, ordered by item then position."""

    losses: torch.Tensor  # cross-entropy in nats
    correct: torch.Tensor  # argmax == target under teacher forcing
    item_index: torch.Tensor  # which item each token belongs to
    position: torch.Tensor  # index of the token within its item's answer

    @property
    def probs(self) -> torch.Tensor:
        return torch.exp(-self.losses)


def answer_token_losses(model: PreTrainedModel, batch: Batch) -> TokenLosses:
    """Teacher-forced cross-entropy of every answer token in ``batch`` (differentiable)."""
    hidden = model.get_decoder()(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
    predicts_answer = batch.answer_mask[:, 1:]  # the state at s-1 predicts the token at s
    targets = batch.input_ids[:, 1:][predicts_answer]
    logits = output_logits(model, hidden[:, :-1][predicts_answer])
    losses = F.cross_entropy(logits, targets, reduction="none")
    positions = (batch.answer_mask.cumsum(dim=1) - 1)[:, 1:][predicts_answer]
    rows = batch.item_index[:, None].expand_as(predicts_answer)[predicts_answer]
    return TokenLosses(losses, logits.argmax(dim=-1) == targets, rows, positions)


def output_logits(model: PreTrainedModel, hidden: torch.Tensor) -> torch.Tensor:
    """The LM head in float32, with the final soft-capping some models (Gemma 2) apply."""
    logits = model.get_output_embeddings()(hidden).float()
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


@torch.inference_mode()
def evaluate_tokens(model: PreTrainedModel, data: EncodedData, *, pad_id: int, batch_size: int = 16) -> TokenLosses:
    """Teacher-forced losses of all answer tokens of ``data``, in item order, without gradients."""
    parts = []
    for start in range(0, len(data.items), batch_size):
        indices = range(start, min(start + batch_size, len(data.items)))
        parts.append(answer_token_losses(model, make_batch(data, indices, pad_id).to(model.device)))
    return TokenLosses(
        *(torch.cat([getattr(p, f) for p in parts]).cpu() for f in ("losses", "correct", "item_index", "position"))
    )
