"""Hugging Face integration: MemFT as a ``compute_loss_func``, its trainer mixin and callback."""

from memlaw.hf.loss import MemFTLoss
from memlaw.hf.trainer import MemFTCallback, MemFTTrainer, MemFTTrainerMixin, memft_trainer

__all__ = ["MemFTCallback", "MemFTLoss", "MemFTTrainer", "MemFTTrainerMixin", "memft_trainer"]
