"""Training objectives: per-token losses in, per-token weights out.

Every objective shares that one signature, so SFT and the MemFT variants are swappable in
the probe, the sweep and inside a Hugging Face Trainer. The loss that is back-propagated is
the weighted mean  sum(w * l) / sum(w); weights never carry gradient.
"""

from __future__ import annotations

from typing import Protocol

import torch

from memlaw.errors import MemlawInputError
from memlaw.measure.teacher_forced import TokenLosses


class Objective(Protocol):
    name: str

    def weights(self, tokens: TokenLosses) -> torch.Tensor:
        """Detached non-negative weight for every answer token of the batch."""
        ...


class SFT:
    """Plain supervised fine-tuning: the mean cross-entropy over all answer tokens."""

    name = "sft"

    def weights(self, tokens: TokenLosses) -> torch.Tensor:
        return torch.ones_like(tokens.losses)


OBJECTIVES: dict[str, type] = {"sft": SFT}


def make_objective(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise MemlawInputError(f"unknown method '{name}': use one of {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]()


def weighted_loss(losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum(w * l) / sum(w); zero (still attached to the graph) when every weight is zero."""
    return copy_losses(losses, weights, torch.zeros_like(losses, dtype=torch.long), 1)[0]


def copy_losses(losses: torch.Tensor, weights: torch.Tensor, copy: torch.Tensor, copies: int) -> torch.Tensor:
    """``weighted_loss`` of each adapter copy's own tokens, as a vector (no device sync)."""
    numerator = losses.new_zeros(copies).index_add(0, copy, weights * losses)
    denominator = losses.new_zeros(copies).index_add(0, copy, weights)
    return torch.where(denominator > 0, numerator / denominator.clamp_min(1e-30), numerator * 0)
