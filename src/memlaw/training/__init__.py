"""Training adapters: objectives (SFT, later MemFT) and the loop that applies them."""

from memlaw.training.objectives import OBJECTIVES, SFT, Objective, make_objective, weighted_loss
from memlaw.training.trainer import TrainConfig, TrainLog, train_adapter

__all__ = [
    "OBJECTIVES",
    "SFT",
    "Objective",
    "TrainConfig",
    "TrainLog",
    "make_objective",
    "train_adapter",
    "weighted_loss",
]
