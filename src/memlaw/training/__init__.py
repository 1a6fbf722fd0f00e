"""Training adapters: objectives (SFT, later MemFT) and the loop that applies them."""

from memlaw.training.objectives import OBJECTIVES, SFT, Objective, copy_losses, make_objective, weighted_loss
from memlaw.training.trainer import TrainConfig, TrainLog, train_adapter, train_copies

__all__ = [
    "OBJECTIVES",
    "SFT",
    "Objective",
    "TrainConfig",
    "TrainLog",
    "copy_losses",
    "make_objective",
    "train_adapter",
    "train_copies",
    "weighted_loss",
]
