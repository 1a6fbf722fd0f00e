"""Hugging Face integration: the MemFT loss, its trainer mixin (``memft_loss=``) and callback; a
callback that plans, watches and certifies memorisation in any Trainer (``MemorisationCallback``);
and memory items as Trainer rows whose answers end (``supervised_rows``)."""

from memlaw.hf.data import collate_rows, supervised_rows
from memlaw.hf.loss import MemFTLoss
from memlaw.hf.trainer import MemFTCallback, MemFTTrainer, MemFTTrainerMixin, memft_trainer
from memlaw.hf.watch import MemorisationCallback

__all__ = [
    "MemFTCallback",
    "MemFTLoss",
    "MemFTTrainer",
    "MemFTTrainerMixin",
    "MemorisationCallback",
    "collate_rows",
    "memft_trainer",
    "supervised_rows",
]
