"""``MemFTTrainer``: a Trainer (or TRL SFTTrainer) whose MemFT loss is normalised globally.

Two changes. ``get_batch_samples``: after the Trainer collects an optimizer step's
micro-batches, the MemFT loss runs its clean pre-pass over them, and the global count of
active tokens replaces ``num_items_in_batch``. ``compute_loss``: one forward per micro-batch,
the MemFT loss over that count, scaled for DDP's gradient averaging as the Trainer scales its
own loss. The loss is given as ``memft_loss=``, not as ``compute_loss_func``, which TRL 1.x
deprecates (it warns and runs a second forward per step for its metrics).
"""

from __future__ import annotations

import torch
from transformers import Trainer, TrainerCallback

from memlaw.hf.loss import MemFTLoss
from memlaw.training.trainer import Progress


class MemFTTrainerMixin:
    def __init__(self, *args, memft_loss: MemFTLoss | None = None, **kwargs):
        if isinstance(kwargs.get("compute_loss_func"), MemFTLoss):
            # as compute_loss_func it would train without the step-wide normalisation, silently
            raise ValueError("give the MemFT loss to this trainer as memft_loss=, not compute_loss_func=")
        self.memft_loss = memft_loss
        super().__init__(*args, **kwargs)
        if memft_loss is not None and getattr(self, "aux_loss_enabled", False):
            raise ValueError("MemFTTrainer does not add a mixture-of-experts router loss: set router_aux_loss_coef=0")

    @property
    def loss_is_scaled_for_ga(self) -> bool | None:
        """The MemFT loss is divided by the whole step's count: no further division by accumulation."""
        return True if self.memft_loss is not None else None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.memft_loss is None:
            return super().compute_loss(
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )
        outputs = model(**{k: v for k, v in inputs.items() if k != "labels"}, use_cache=False)
        loss = self.memft_loss(outputs, inputs["labels"], num_items_in_batch=num_items_in_batch)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            # the count spans every process and DDP averages gradients: the Trainer's own correction
            loss = loss * self.accelerator.num_processes
        return (loss, outputs) if return_outputs else loss

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        batches, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
        loss = self.memft_loss
        if loss is None or not batches:
            return batches, num_items
        if self.args.n_gpu > 1:
            raise ValueError(
                "MemFTTrainer counts active tokens per process: launch one process per GPU (accelerate/torchrun) "
                "instead of DataParallel over several GPUs in one process"
            )
        counts = loss.prepare(self.model, [self._prepare_inputs(batch) for batch in batches]).to(device)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            counts = self.accelerator.gather(counts).view(-1, 2).sum(0)  # the same rule as the Trainer's own count
        active, supervised = counts
        if int(active) > 0:
            return batches, active
        if loss.objective.fallback == "sft":
            loss.fall_back_to_all_tokens()
            return batches, supervised
        return batches, torch.zeros((), device=device)  # "skip": a zero loss this step


def memft_trainer(base: type = Trainer) -> type:
    """``base`` (``transformers.Trainer``, ``trl.SFTTrainer``, ...) with MemFT's global normalisation;
    pass the loss as ``memft_loss=``."""
    return type(f"MemFT{base.__name__}", (MemFTTrainerMixin, base), {})


MemFTTrainer = memft_trainer(Trainer)


class MemFTCallback(TrainerCallback):
    """Adds ``memft/sub_threshold_share`` (tokens with p below the threshold, under the training
    forward) and ``memft/certified_items`` (share of sequences with every token above it) since
    the last log to each log record (the console, ``log_history`` and callbacks after this one).

    With ``stop=True`` it also ends training as ``memlaw train`` does, at the end of an epoch:
    once no answer token of the epoch was at p <= 0.5 (certified under the training forward), or
    when neither the mean loss nor the stubborn tokens' loss above ln 2 improved by
    ``plateau_tol`` (per stubborn token) for ``plateau_epochs`` epochs (memlaw's plateau rule,
    ``Progress``; the Trainer's own scheduler keeps the rate). ``stop_reason`` then says which."""

    def __init__(self, loss: MemFTLoss, *, stop: bool = False, plateau_epochs: int = 10, plateau_tol: float = 0.01):
        self.loss, self.stop = loss, stop
        self.plateau_epochs, self.progress = plateau_epochs, Progress(plateau_tol)
        self.stale_epochs = 0
        self.stop_reason: str | None = None

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.loss.reset_epoch()

    def on_epoch_end(self, args, state, control, **kwargs):
        epoch = self.loss.epoch
        if not self.stop or not epoch["tokens"]:
            return
        improved = self.progress.improved(epoch["loss"] / epoch["tokens"], epoch["excess"], epoch["stubborn"])
        self.stale_epochs = 0 if improved else self.stale_epochs + 1
        if epoch["stubborn"] == 0:
            self.stop_reason = "certified"
        elif self.stale_epochs >= self.plateau_epochs:
            self.stop_reason = f"converged ({self.progress.last_improved})"
        control.should_training_stop = self.stop_reason is not None

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
