"""Training adapters: objectives (SFT, MemFT) and the copy-aware training loop."""

from memlaw.training.memft import OnlyThreshold, SlidingWindow
from memlaw.training.methods import METHODS, make_objective
from memlaw.training.objectives import SFT, Objective, copy_losses
from memlaw.training.trainer import TrainConfig, TrainLog, train_adapter, train_copies

__all__ = [
    "METHODS",
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
]
