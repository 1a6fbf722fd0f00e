"""Hugging Face integration: the MemFT loss, its trainer mixin (``memft_loss=``) and callback."""

from memlaw.hf.loss import MemFTLoss
from memlaw.hf.trainer import MemFTCallback, MemFTTrainer, MemFTTrainerMixin, memft_trainer

__all__ = ["MemFTCallback", "MemFTLoss", "MemFTTrainer", "MemFTTrainerMixin", "memft_trainer"]
