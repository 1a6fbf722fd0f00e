"""Training objectives: per-token losses in, per-token weights out.

Every objective shares that one signature, so SFT and the MemFT variants are swappable in
the probe, the sweep and inside a Hugging Face Trainer. The loss that is back-propagated is
the weighted mean  sum(w * l) / sum(w); weights never carry gradient. A copy whose weights
are all zero in a step gets no update at all (the reference's "zero backprop" semantics).

An objective may also choose which items an epoch trains on (the MemFT curriculum); the
default is a fresh seeded shuffle of all items every epoch.
"""

from __future__ import annotations

import math

import torch

from memlaw.measure.teacher_forced import TokenLosses


class Objective:
    name = ""

    def weights(self, tokens: TokenLosses) -> torch.Tensor:
        """Detached non-negative weight for every answer token of the batch."""
        raise NotImplementedError

    def epoch_items(
        self, epoch: int, num_items: int, batch_size: int, order: torch.Generator, copy: int = 0
    ) -> torch.Tensor:
        """The items epoch ``epoch`` trains on, in training order (``order``: copy ``copy``'s generator)."""
        return torch.randperm(num_items, generator=order)

    def total_steps(self, epochs: int, num_items: int, batch_size: int) -> int:
        return epochs * math.ceil(num_items / batch_size)


class SFT(Objective):
    """Plain supervised fine-tuning: the mean cross-entropy over all answer tokens."""

    name = "sft"

    def weights(self, tokens: TokenLosses) -> torch.Tensor:
        return torch.ones_like(tokens.losses)


def copy_losses(
    losses: torch.Tensor,
    weights: torch.Tensor,
    copy: torch.Tensor,
    copies: int,
    denominator: torch.Tensor | None = None,
) -> torch.Tensor:
    """sum(w * l) / sum(w) over each adapter copy's own tokens, as a vector (no device sync).

    ``denominator`` replaces sum(w) per copy where the normalisation spans more than this batch
    (a Trainer's count over all micro-batches and processes). A copy whose denominator is zero
    gets zero, still attached to the graph (no update)."""
    numerator = losses.new_zeros(copies).index_add(0, copy, weights * losses)
    if denominator is None:
        denominator = losses.new_zeros(copies).index_add(0, copy, weights)
    denominator = denominator.reshape(copies)
    return torch.where(denominator > 0, numerator / denominator.clamp_min(1e-30), numerator * 0)
