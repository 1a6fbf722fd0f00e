"""MemFT: threshold-guided fine-tuning (paper §4; the authors' variants: docs/reference.md §6).

* ``memft-ot`` (only threshold): gradient only on tokens whose target probability is still
  below the threshold (p < 0.5, loss > ln 2), normalised over those tokens.
* ``memft-sw`` (sliding/curriculum): for many short items, the OT loss on a curriculum that
  grows the share of items trained (20 % → 100 % at set epochs); for one long sequence, a soft
  threshold weight times a window anchored at the first teacher-forced argmax error, widened
  while the anchor stays stuck. ``mode: auto`` picks the curriculum for several items and the
  window for one.

Defaults are the reference's; each option is documented on its field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from memlaw.errors import MemlawInputError
from memlaw.measure.teacher_forced import TokenLosses
from memlaw.training.objectives import Objective

FALLBACKS = ("sft", "skip")
MODES = ("auto", "curriculum", "sliding")


def loss_threshold(probability: float) -> float:
    """The loss above which a token's target probability is below ``probability``."""
    if not 0.0 < probability < 1.0:
        raise MemlawInputError(f"threshold is a probability in (0, 1), got {probability}")
    return -math.log(probability)


def threshold_mask(tokens: TokenLosses, threshold: float, fallback: str) -> torch.Tensor:
    """1 for tokens with p < ``threshold`` (strictly), per copy falling back when a copy has none:
    ``sft`` weighs all its tokens (a plain SFT step), ``skip`` leaves it all zero (no update)."""
    losses = tokens.losses.detach()
    mask = (losses > loss_threshold(threshold)).to(losses.dtype)
    return mask if fallback == "skip" else mean_where_vanishing(tokens, mask, 0.0)


def mean_where_vanishing(tokens: TokenLosses, weights: torch.Tensor, at_most: float) -> torch.Tensor:
    """``weights``, but all ones (the plain mean) for each copy whose weights sum to ``at_most`` or less."""
    total = torch.bincount(tokens.copy, weights=weights)
    return torch.where(total[tokens.copy] > at_most, weights, torch.ones_like(weights))


@dataclass
class OnlyThreshold(Objective):
    """``memft-ot``: train only the tokens not yet memorised."""

    name = "memft-ot"
    #: A token is "not yet memorised" while its target probability is below this (strictly).
    threshold: float = 0.5
    #: When every token of a batch is already above the threshold: ``sft`` takes a plain SFT
    #: step on all of them (reference OT), ``skip`` makes no update.
    fallback: str = "sft"

    def __post_init__(self) -> None:
        loss_threshold(self.threshold)
        if self.fallback not in FALLBACKS:
            raise MemlawInputError(f"fallback must be {' or '.join(FALLBACKS)}, got '{self.fallback}'")

    def weights(self, tokens: TokenLosses) -> torch.Tensor:
        return threshold_mask(tokens, self.threshold, self.fallback)


@dataclass
class _WindowState:
    last_anchor: int = -1
    patience: int = 0
    expansion: float = 1.0


@dataclass
class SlidingWindow(Objective):
    """``memft-sw``: the curriculum over items, or the sliding window over one sequence."""

    name = "memft-sw"
    #: ``curriculum`` (many short items), ``sliding`` (one long sequence) or ``auto`` (by item count).
    mode: str = "auto"
    #: Probability below which a token counts as not memorised.
    threshold: float = 0.5
    # -- curriculum (reference "inter-batch temporal curriculum") --
    #: Epochs at which each stage but the last ends; the last stage runs to the end of training.
    stage_epochs: list[int] = field(default_factory=lambda: [20, 40, 60, 80])
    #: Share of the items trained in each stage (one more entry than ``stage_epochs``).
    stage_ratios: list[float] = field(default_factory=lambda: [0.2, 0.4, 0.6, 0.8, 1.0])
    #: Draw a new item order every epoch (the reference keeps one fixed order for the whole run).
    reshuffle: bool = False
    # -- sliding window (reference "intra-sample spatial sliding") --
    #: Window length W0 in tokens after the anchor (the first teacher-forced argmax error).
    window: int = 50
    #: Decay length of the weight past the anchor: exp(−(i − anchor)/decay).
    decay: float = 20.0
    #: Weight of tokens beyond the window.
    floor: float = 0.01
    #: Sharpness k of the soft threshold weight sigmoid(k·(loss − ln 2)).
    sharpness: float = 10.0
    #: Steps the anchor must stay at the same position before the window widens.
    patience: int = 3
    #: How much the window widens per stuck step, and the most it widens (in multiples of W0).
    widen_step: float = 0.5
    max_widen: float = 4.0

    def __post_init__(self) -> None:
        loss_threshold(self.threshold)
        if self.mode not in MODES:
            raise MemlawInputError(f"mode must be one of {', '.join(MODES)}, got '{self.mode}'")
        if len(self.stage_ratios) != len(self.stage_epochs) + 1:
            raise MemlawInputError("stage_ratios needs one entry more than stage_epochs (the last stage)")
        if sorted(self.stage_epochs) != list(self.stage_epochs) or any(e <= 0 for e in self.stage_epochs):
            raise MemlawInputError(f"stage_epochs must be positive and increasing, got {self.stage_epochs}")
        if any(not 0 < r <= 1 for r in self.stage_ratios):
            raise MemlawInputError(f"stage_ratios must lie in (0, 1], got {self.stage_ratios}")
        for name in ("window", "decay", "sharpness", "patience", "max_widen"):
            if not getattr(self, name) > 0:
                raise MemlawInputError(f"{name} must be positive, got {getattr(self, name)}")
        self._orders: dict[int, torch.Tensor] = {}
        self._windows: dict[tuple[int, int], _WindowState] = {}
        self._curriculum: bool | None = None if self.mode == "auto" else self.mode == "curriculum"

    # -- curriculum ------------------------------------------------------------------------------
    def _uses_curriculum(self, num_items: int) -> bool:
        if self._curriculum is None:
            self._curriculum = num_items > 1
        return self._curriculum

    def active_items(self, epoch: int, num_items: int, batch_size: int) -> int:
        """Items trained in ``epoch``: the stage's share, in whole batches, at least one batch."""
        stage = next((i for i, end in enumerate(self.stage_epochs) if epoch < end), len(self.stage_epochs))
        ratio = self.stage_ratios[stage]
        if ratio >= 1.0:
            return num_items
        whole_batches = math.floor(num_items * ratio / batch_size) * batch_size
        return min(num_items, max(batch_size, whole_batches))

    def epoch_items(
        self, epoch: int, num_items: int, batch_size: int, order: torch.Generator, copy: int = 0
    ) -> torch.Tensor:
        if not self._uses_curriculum(num_items):
            return super().epoch_items(epoch, num_items, batch_size, order, copy)
        if self.reshuffle or copy not in self._orders:
            self._orders[copy] = torch.randperm(num_items, generator=order)
        return self._orders[copy][: self.active_items(epoch, num_items, batch_size)]

    def total_steps(self, epochs: int, num_items: int, batch_size: int) -> int:
        if not self._uses_curriculum(num_items):
            return super().total_steps(epochs, num_items, batch_size)
        return sum(math.ceil(self.active_items(e, num_items, batch_size) / batch_size) for e in range(epochs))

    # -- weights -----------------------------------------------------------------------------------
    def weights(self, tokens: TokenLosses) -> torch.Tensor:
        if self._curriculum:
            return threshold_mask(tokens, self.threshold, "skip")
        return self._sliding_weights(tokens)

    def _sliding_weights(self, tokens: TokenLosses) -> torch.Tensor:
        losses = tokens.losses.detach()
        soft = torch.sigmoid(self.sharpness * (losses - loss_threshold(self.threshold)))
        multiplier = torch.ones_like(losses)
        groups = torch.stack([tokens.copy, tokens.item_index])
        wrong = ~tokens.correct
        for copy, item in torch.unique(groups, dim=1).T.tolist():
            rows = (tokens.copy == copy) & (tokens.item_index == item)
            errors = tokens.position[rows & wrong]
            state = self._windows.setdefault((copy, item), _WindowState())
            anchor = int(errors.min()) if len(errors) else -1
            state.patience = state.patience + 1 if anchor >= 0 and anchor == state.last_anchor else 0
            state.expansion = (
                min(state.expansion + self.widen_step, self.max_widen) if state.patience >= self.patience else 1.0
            )
            state.last_anchor = anchor
            if anchor < 0:
                continue  # no error: the soft threshold weight alone
            past = (tokens.position[rows] - anchor).to(losses.dtype)
            width = self.window * state.expansion
            multiplier[rows] = torch.where(past < width, torch.exp(-past.clamp_min(0) / self.decay), self.floor)
        # A copy whose weights all but vanish trains on its plain mean (the reference's fallback).
        return mean_where_vanishing(tokens, soft * multiplier, 1e-5)
