"""Training adapters: objectives (SFT, MemFT) and the copy-aware training loop."""

from memlaw.training.memft import OnlyThreshold, SlidingWindow
from memlaw.training.objectives import SFT, Objective, copy_losses, make_objective, weighted_loss
from memlaw.training.trainer import TrainConfig, TrainLog, train_adapter, train_copies

__all__ = [
    "SFT",
    "Objective",
    "OnlyThreshold",
    "SlidingWindow",
    "TrainConfig",
    "TrainLog",
    "copy_losses",
    "make_objective",
    "train_adapter",
    "train_copies",
    "weighted_loss",
]
