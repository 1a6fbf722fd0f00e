"""The replay rule of a training cycle: held items cost nothing while they stay above the threshold.

New items train with the cycle's own objective (SFT by default). A held item's token gets weight
1 while its target probability is below the threshold (p < 0.5: it slipped) and 0 otherwise, as
MemFT's threshold does, so what the adapter already holds is replayed only where it is lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from memlaw.measure.teacher_forced import TokenLosses
from memlaw.training.memft import loss_threshold
from memlaw.training.objectives import Objective


@dataclass
class Replay(Objective):
    """``inner`` on new items; the threshold alone on the first ``held`` items of the data."""

    inner: Objective
    held: int
    threshold: float = 0.5
    #: Held items seen below the threshold in a training pass, by index.
    slipped: set[int] = field(default_factory=set)

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"replay+{self.inner.name}"

    def weights(self, tokens: TokenLosses) -> torch.Tensor:
        inner = self.inner.weights(tokens)
        held = tokens.item_index < self.held
        below = tokens.losses.detach() > loss_threshold(self.threshold)
        self.slipped.update(torch.unique(tokens.item_index[held & below]).tolist())
        return torch.where(held, below.to(inner.dtype), inner)

    def epoch_items(
        self, epoch: int, num_items: int, batch_size: int, order: torch.Generator, copy: int = 0
    ) -> torch.Tensor:
        return self.inner.epoch_items(epoch, num_items, batch_size, order, copy)

    def total_steps(self, epochs: int, num_items: int, batch_size: int) -> int:
        return self.inner.total_steps(epochs, num_items, batch_size)
