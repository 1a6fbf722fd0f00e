"""MemFT as a Hugging Face Trainer loss, normalised over the *global* active tokens.

OT's loss is the mean over the tokens still below the threshold. Under gradient accumulation
and data parallelism that mean must run over every micro-batch of the optimizer step on every
process, which no single micro-batch knows. ``MemFTTrainer`` (``memft_trainer``) therefore
runs one clean no-grad forward over the step's micro-batches first (about a third of a
training step's cost): it fixes each token's mask from clean probabilities (no dropout noise)
and hands the global count, gathered across processes, to the loss as ``num_items_in_batch``;
the trainer computes the loss itself and scales it for DDP's gradient averaging. As a plain
``Trainer``'s ``compute_loss_func`` (without that pre-pass) the loss masks from the training
forward itself and divides by the Trainer's global count of supervised tokens: the same
direction per step, a smaller scale.
"""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F

from memlaw.constants import CERTIFY_LOSS
from memlaw.measure.teacher_forced import TokenLosses
from memlaw.training.memft import OnlyThreshold, loss_threshold, threshold_mask
from memlaw.training.objectives import copy_losses

IGNORE = -100


def shifted_token_losses(logits: torch.Tensor, labels: torch.Tensor) -> TokenLosses:
    """Per-token cross-entropy of a causal LM's supervised positions; ``item_index`` is the batch row."""
    predicting, targets = logits[:, :-1], labels[:, 1:]
    valid = targets != IGNORE
    picked = predicting[valid].float()
    losses = F.cross_entropy(picked, targets[valid], reduction="none")
    rows = torch.arange(len(labels), device=labels.device)[:, None].expand_as(targets)[valid]
    positions = (valid.cumsum(dim=1) - 1)[valid]
    return TokenLosses(losses, picked.argmax(-1) == targets[valid], rows, positions, torch.zeros_like(rows))


def _key(labels: torch.Tensor) -> str:
    return hashlib.sha1(labels.detach().cpu().numpy().tobytes()).hexdigest()


class MemFTLoss:
    """MemFT-OT for ``MemFTTrainer`` / ``memft_trainer(trl.SFTTrainer)`` (``memft_loss=``), or as a
    plain ``Trainer``'s ``compute_loss_func``.

    ``threshold`` and ``fallback`` are those of ``memft-ot`` (memlaw.training.memft). The
    fallback applies to the whole optimizer step: ``sft`` trains every token when none is
    below the threshold anywhere, ``skip`` returns a zero loss.
    """

    def __init__(self, threshold: float = 0.5, fallback: str = "sft"):
        self.objective = OnlyThreshold(threshold=threshold, fallback=fallback)
        self._masks: dict[str, torch.Tensor] = {}  # clean masks of this step's micro-batches
        self.reset_stats()
        self.reset_epoch()

    # -- the pre-pass (called by MemFTTrainer for each optimizer step) -------------------------
    @torch.no_grad()
    def prepare(self, model: torch.nn.Module, batches: list[dict]) -> torch.Tensor:
        """Clean masks of ``batches``; returns the local counts of tokens below the threshold and
        of all supervised tokens (the ``sft`` fallback's denominator)."""
        was_training = model.training
        model.eval()
        self._masks.clear()
        active, supervised = 0, 0
        try:
            for batch in batches:
                inputs = {k: v for k, v in batch.items() if k != "labels"}
                logits = model(**inputs, use_cache=False).logits
                tokens = shifted_token_losses(logits, batch["labels"])
                # the mask alone: the fallback is decided for the whole step, not per micro-batch
                mask = threshold_mask(tokens, self.objective.threshold, "skip")
                self._masks[_key(batch["labels"])] = mask
                active += int(mask.sum())
                supervised += len(mask)
        finally:
            model.train(was_training)
        return torch.tensor([active, supervised])

    def fall_back_to_all_tokens(self) -> None:
        """No token is below the threshold anywhere in this step: the ``sft`` fallback's masks."""
        self._masks = {key: torch.ones_like(mask) for key, mask in self._masks.items()}

    # -- the loss ----------------------------------------------------------------------------------
    def __call__(self, outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs.logits
        tokens = shifted_token_losses(logits, labels)
        prepared = self._masks.pop(_key(labels), None)
        weights = (prepared if prepared is not None else self.objective.weights(tokens)).to(tokens.losses.dtype)
        if torch.is_grad_enabled() and logits.requires_grad:
            self._record(tokens)
        # the step's global count when the Trainer gives one, else this batch's own weights
        count = None
        if num_items_in_batch is not None:
            count = torch.as_tensor(num_items_in_batch, device=tokens.losses.device, dtype=tokens.losses.dtype)
        return copy_losses(tokens.losses, weights, tokens.copy, 1, denominator=count)[0]

    # -- statistics for MemFTCallback -----------------------------------------------------------
    def reset_stats(self) -> None:
        """Since the last log: tokens, those below the threshold, items and certified items."""
        self.stats = {"tokens": 0, "sub_threshold": 0, "items": 0, "certified_items": 0}

    def reset_epoch(self) -> None:
        """Since the epoch began, what the plateau rule reads: tokens, their summed loss, the
        tokens at p <= 0.5 (loss >= ln 2) and their summed loss above ln 2 (the stubborn excess)."""
        self.epoch = {"tokens": 0, "loss": 0.0, "stubborn": 0, "excess": 0.0}

    def _record(self, tokens: TokenLosses) -> None:
        losses = tokens.losses.detach()
        below = losses > loss_threshold(self.objective.threshold)
        rows = int(tokens.item_index.max()) + 1 if len(tokens.item_index) else 0
        failing = torch.zeros(rows, dtype=torch.bool, device=below.device).index_put_(
            (tokens.item_index,), below, accumulate=True
        )
        self.stats["tokens"] += len(below)
        self.stats["sub_threshold"] += int(below.sum())
        self.stats["items"] += rows
        self.stats["certified_items"] += int((~failing).sum())
        above = losses - CERTIFY_LOSS
        stubborn = above >= 0
        self.epoch["tokens"] += len(losses)
        self.epoch["loss"] += float(losses.sum())
        self.epoch["stubborn"] += int(stubborn.sum())
        self.epoch["excess"] += float((above * stubborn).sum())
