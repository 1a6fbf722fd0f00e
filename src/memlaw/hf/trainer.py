"""``MemFTTrainer``: a Trainer (or TRL SFTTrainer) whose MemFT loss is normalised globally.

The only change is ``get_batch_samples``: after the Trainer collects an optimizer step's
micro-batches, the MemFT loss runs its clean pre-pass over them, and the global count of
active tokens replaces ``num_items_in_batch``. Everything the Trainer does with that count
(no division by the accumulation steps, gathering across processes, scaling for DDP's
gradient averaging) then applies to the right denominator.
"""

from __future__ import annotations

import torch
from transformers import Trainer, TrainerCallback

from memlaw.hf.loss import MemFTLoss


class MemFTTrainerMixin:
    def get_batch_samples(self, epoch_iterator, num_batches, device):
        batches, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
        loss = self.compute_loss_func
        if not isinstance(loss, MemFTLoss) or not batches:
            return batches, num_items
        if self.args.n_gpu > 1:
            raise ValueError(
                "MemFTTrainer counts active tokens per process: launch one process per GPU (accelerate/torchrun) "
                "instead of DataParallel over several GPUs in one process"
            )
        active = loss.prepare(self.model, [self._prepare_inputs(batch) for batch in batches]).to(device)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            active = self.accelerator.gather(active).sum()  # the same rule as the Trainer's own count
        if int(active) > 0:
            return batches, active
        if loss.objective.fallback == "sft":
            loss.fall_back_to_all_tokens()
            return batches, num_items
        return batches, torch.zeros((), device=device)  # "skip": a zero loss this step


def memft_trainer(base: type = Trainer) -> type:
    """``base`` (``transformers.Trainer``, ``trl.SFTTrainer``, ...) with MemFT's global normalisation."""
    return type(f"MemFT{base.__name__}", (MemFTTrainerMixin, base), {})


MemFTTrainer = memft_trainer(Trainer)


class MemFTCallback(TrainerCallback):
    """Adds ``memft/sub_threshold_share`` (tokens with p below the threshold, under the training
    forward) and ``memft/certified_items`` (share of sequences with every token above it) since
    the last log to each log record (the console, ``log_history`` and callbacks after this one)."""

    def __init__(self, loss: MemFTLoss):
        self.loss = loss

    def on_log(self, args, state, control, logs=None, **kwargs):
        stats = self.loss.stats
        if logs is None or not stats["tokens"]:
            return
        extra = {
            "memft/sub_threshold_share": stats["sub_threshold"] / stats["tokens"],
            "memft/certified_items": stats["certified_items"] / max(1, stats["items"]),
        }
        logs.update(extra)
        if state.log_history:
            state.log_history[-1].update(extra)
        self.loss.reset_stats()
