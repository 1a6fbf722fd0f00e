"""The training loop of one adapter: forward, per-token loss, objective weights, backward, step.

Each phase runs under a ``torch.profiler.record_function`` label (``memlaw.forward``,
``.objective``, ``.backward``, ``.optimizer``, ``.check``): free when no profiler runs, and what
``benchmarks/small_probes.py`` reads to say where a step's time goes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.profiler import record_function
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from memlaw.constants import CERTIFY_LOSS
from memlaw.data.encoding import EncodedData
from memlaw.engine.prefix_cache import PrefixCache
from memlaw.errors import MemlawInputError
from memlaw.measure.teacher_forced import batch_token_losses, evaluate_tokens
from memlaw.models.loading import bf16_autocast_available
from memlaw.placements.base import Adapter
from memlaw.training.objectives import SFT, Objective, copy_losses


@dataclass
class TrainConfig:
    """Optimisation settings; defaults follow the reference (AdamW, lr 1e-2, clip 1.0, linear decay)."""

    lr: float = 1e-2
    epochs: int = 100
    steps: int | None = None  # when set, overrides epochs
    batch_size: int = 8
    max_grad_norm: float = 1.0
    weight_decay: float = 0.0
    seed: int = 0
    check_every: int = 1  # epochs between clean certification checks; 0 turns them off
    stop_when_certified: bool = False
    autocast: bool = False  # bf16 autocast of the training forward pass; measurements stay float32

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) <= 0:
                raise MemlawInputError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.steps is not None and self.steps <= 0:
            raise MemlawInputError(f"steps must be a positive integer, got {self.steps}")
        if not self.lr > 0:
            raise MemlawInputError(f"lr must be positive, got {self.lr}")
        if self.check_every < 0:
            raise MemlawInputError(f"check_every must be 0 (never) or a positive integer, got {self.check_every}")

    def total_steps(self, num_items: int, objective: Objective | None = None) -> int:
        if self.steps is not None:
            return self.steps
        return (objective or SFT()).total_steps(self.epochs, num_items, self.batch_size)


@dataclass
class TrainLog:
    steps: int
    loss_curve: list[float]  # mean answer-token cross-entropy of each step's batch (before its update)
    certified_step: int | None  # first step count after which a clean check found every p_t > 0.5
    stopped_early: bool


def train_adapter(
    adapter: Adapter,
    data: EncodedData,
    objective: Objective,
    config: TrainConfig,
    *,
    pad_id: int,
    eval_batch_size: int = 16,
    cache: PrefixCache | None = None,
    progress: bool = False,
) -> TrainLog:
    """Train one adapter on ``data``; deterministic on CPU for a fixed ``config.seed``."""
    (log,) = train_copies(
        adapter, data, objective, config, pad_id=pad_id, eval_batch_size=eval_batch_size, cache=cache, progress=progress
    )
    return log


def train_copies(
    adapter: Adapter,
    data: EncodedData,
    objective: Objective,
    config: TrainConfig,
    *,
    pad_id: int,
    seeds: list[int] | None = None,
    eval_batch_size: int = 16,
    cache: PrefixCache | None = None,
    progress: bool = False,
) -> list[TrainLog]:
    """Train the ``adapter.copies`` copies of ``adapter`` together, each as if it were alone.

    Copy j draws its batch order from ``seeds[j]`` (default: ``config.seed``); its batch rows
    form block j of every step's batch, its loss is normalised over its own tokens and its
    gradient clipped on its own, so it follows the trajectory it would follow alone.

    Certification: a copy's clean check runs after an epoch in which every training batch of
    that copy was already below ln 2 (a cheap trigger; without it a check would cost a forward
    pass over all items per epoch). When an epoch is a single batch and the adapter has no
    dropout, each step's forward pass *is* that check for the previous step, so
    ``certified_step`` is exact; otherwise it is an upper bound at epoch granularity.
    """
    copies = adapter.copies
    seeds = [config.seed] * copies if seeds is None else seeds
    if config.autocast and not bf16_autocast_available(adapter.model.device):
        raise MemlawInputError("autocast (bf16) needs a GPU or a CPU with bf16 support; train without it here")
    model, params = adapter.model, adapter.parameters()
    total = config.total_steps(len(data.items), objective)
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    schedule = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=0, num_training_steps=total)
    torch.manual_seed(config.seed)  # adapter dropout draws from the global generator
    orders = [torch.Generator().manual_seed(seed) for seed in seeds]
    forward_is_check = config.check_every > 0 and len(data.items) <= config.batch_size and not adapter.stochastic

    curves: list[list[float]] = [[] for _ in range(copies)]
    certified: list[int | None] = [None] * copies
    stopped = [False] * copies
    step, epoch = 0, 0
    bar = tqdm(total=total, desc="training", unit="step", disable=not progress, leave=False)
    while step < total and not all(stopped):
        adapter.train(True)
        below = [True] * copies  # every batch of this epoch under the threshold, per copy
        epoch_orders = (
            objective.epoch_items(epoch, len(data.items), config.batch_size, g, copy=j) for j, g in enumerate(orders)
        )
        batches = zip(*(order.split(config.batch_size) for order in epoch_orders), strict=True)
        for per_copy in batches:
            indices = [i for part in per_copy for i in part.tolist()]
            with (
                record_function("memlaw.forward"),
                torch.autocast(device_type=model.device.type, dtype=torch.bfloat16, enabled=config.autocast),
            ):
                tokens = batch_token_losses(model, data, indices, pad_id=pad_id, cache=cache, copies=copies)
            with record_function("memlaw.objective"):
                weights = objective.weights(tokens).detach()
                loss = copy_losses(tokens.losses, weights, tokens.copy, copies).sum()
                worst, mean, weighted = copy_stats(tokens.losses.detach(), tokens.copy, copies, weights)  # one sync
            for j in range(copies):
                below[j] = below[j] and worst[j] < CERTIFY_LOSS
                if forward_is_check and certified[j] is None and worst[j] < CERTIFY_LOSS:
                    certified[j] = step  # the parameters after ``step`` updates are certified
                    stopped[j] = config.stop_when_certified
                if not stopped[j]:
                    curves[j].append(mean[j])
            if all(stopped):
                break
            # Stopped copies, and copies whose objective weighs nothing this step, get no update:
            # without a gradient AdamW leaves their parameters, moments and step count alone, as it
            # does for a lone adapter that skips its backward (the reference's zero-backprop steps).
            idle = [j for j in range(copies) if stopped[j] or weighted[j] == 0]
            optimizer.zero_grad(set_to_none=True)
            if len(idle) < copies:
                with record_function("memlaw.backward"):
                    loss.backward()
                with record_function("memlaw.optimizer"):
                    adapter.drop_gradients(idle)
                    adapter.clip_grad_norm_(config.max_grad_norm)
            with record_function("memlaw.optimizer"):
                optimizer.step()
                schedule.step()
            step += 1
            bar.update()
            bar.set_postfix(loss=f"{curves[0][-1] if curves[0] else float('nan'):.3f}")
            if step >= total:
                break
        epoch += 1
        adapter.train(False)
        due = config.check_every and (epoch % config.check_every == 0 or step >= total)
        pending = [j for j in range(copies) if certified[j] is None and below[j] and not stopped[j]]
        if due and pending and not forward_is_check:
            with record_function("memlaw.check"):
                tokens = evaluate_tokens(
                    model, data, pad_id=pad_id, batch_size=eval_batch_size, cache=cache, copies=copies
                )
            for j in pending:
                if float(tokens.of_copy(j).losses.max()) < CERTIFY_LOSS:
                    certified[j] = step
                    stopped[j] = config.stop_when_certified
    bar.close()
    adapter.train(False)
    return [
        TrainLog(len(curves[j]), curves[j], certified[j], stopped_early=len(curves[j]) < total) for j in range(copies)
    ]


def copy_stats(
    losses: torch.Tensor, copy: torch.Tensor, copies: int, weights: torch.Tensor
) -> tuple[list[float], list[float], list[float]]:
    """Largest and mean token loss of each copy, and the sum of its objective weights."""
    worst = losses.new_full((copies,), float("-inf")).scatter_reduce(0, copy, losses, reduce="amax")
    total = losses.new_zeros(copies).index_add(0, copy, losses)
    count = losses.new_zeros(copies).index_add(0, copy, torch.ones_like(losses))
    weighted = losses.new_zeros(copies).index_add(0, copy, weights)
    worst_list, mean_list, weighted_list = torch.stack([worst, total / count, weighted]).tolist()
    return worst_list, mean_list, weighted_list
