"""The replay rule of a training cycle: a held item costs nothing until it slips below the threshold.

New items train with the cycle's own objective (SFT by default). A held item has weight 0 while
every one of its tokens stays above the threshold (p > 0.5, where greedy decoding reproduces it);
once one of its tokens is seen below, the item trains with the cycle's objective, like a new item,
for the rest of the cycle. Training an item back only until it crosses the threshold (weight 1
below, 0 above) leaves its tokens hovering at p 0.5, and a cycle then stops with some of them just
below: on two MLP layers that rule left 1 to 14 held items uncertified at cycles SFT replay
certified (docs/continual.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from memlaw.measure.teacher_forced import TokenLosses
from memlaw.training.memft import loss_threshold
from memlaw.training.objectives import Objective


@dataclass
class Replay(Objective):
    """``inner`` on new items and on held items that slipped; nothing on the other held items
    (the first ``held`` items of the data)."""

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
        slipped = torch.isin(tokens.item_index, torch.tensor(sorted(self.slipped), device=tokens.item_index.device))
        return torch.where(held & ~slipped, torch.zeros_like(inner), inner)

    def epoch_items(
        self, epoch: int, num_items: int, batch_size: int, order: torch.Generator, copy: int = 0
    ) -> torch.Tensor:
        return self.inner.epoch_items(epoch, num_items, batch_size, order, copy)

    def total_steps(self, epochs: int, num_items: int, batch_size: int) -> int:
        return self.inner.total_steps(epochs, num_items, batch_size)
