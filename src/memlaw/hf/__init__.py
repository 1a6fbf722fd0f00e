"""Hugging Face integration: the MemFT loss, its trainer mixin (``memft_loss=``) and callback, and
memory items as Trainer rows whose answers end (``supervised_rows``)."""

from memlaw.hf.data import supervised_rows
from memlaw.hf.loss import MemFTLoss
from memlaw.hf.trainer import MemFTCallback, MemFTTrainer, MemFTTrainerMixin, memft_trainer

__all__ = ["MemFTCallback", "MemFTLoss", "MemFTTrainer", "MemFTTrainerMixin", "memft_trainer", "supervised_rows"]
