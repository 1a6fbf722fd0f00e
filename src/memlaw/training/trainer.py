"""The training loop of one adapter: forward, per-token loss, objective weights, backward, step."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from memlaw.constants import CERTIFY_LOSS
from memlaw.data.encoding import EncodedData, make_batch
from memlaw.errors import MemlawInputError
from memlaw.measure.teacher_forced import answer_token_losses, evaluate_tokens
from memlaw.placements.base import Adapter
from memlaw.training.objectives import Objective, weighted_loss


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

    def total_steps(self, num_items: int) -> int:
        return self.steps if self.steps is not None else self.epochs * math.ceil(num_items / self.batch_size)


@dataclass
class TrainLog:
    steps: int
    loss_curve: list[float]  # mean answer-token cross-entropy of each step's batch (before its update)
    certified_step: int | None  # first step after which a clean check found every p_t > 0.5
    stopped_early: bool


def train_adapter(
    adapter: Adapter,
    data: EncodedData,
    objective: Objective,
    config: TrainConfig,
    *,
    pad_id: int,
    eval_batch_size: int = 16,
    progress: bool = False,
) -> TrainLog:
    """Train ``adapter`` on ``data``; deterministic on CPU for a fixed ``config.seed``.

    Certification is checked after every ``check_every`` epochs with a clean (dropout-free,
    teacher-forced) pass over all items, so ``certified_step`` is exact when an epoch is one
    step (one long sequence) and an epoch-granular upper bound otherwise.
    """
    model = adapter.model
    params = adapter.parameters()
    total = config.total_steps(len(data.items))
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    schedule = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=0, num_training_steps=total)
    torch.manual_seed(config.seed)  # adapter dropout draws from the global generator
    order_rng = torch.Generator().manual_seed(config.seed)

    curve: list[float] = []
    certified_step: int | None = None
    step, epoch = 0, 0
    bar = tqdm(total=total, desc="training", unit="step", disable=not progress, leave=False)
    while step < total:
        adapter.train(True)
        for indices in torch.randperm(len(data.items), generator=order_rng).split(config.batch_size):
            tokens = answer_token_losses(model, make_batch(data, indices.tolist(), pad_id).to(model.device))
            loss = weighted_loss(tokens.losses, objective.weights(tokens).detach())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            schedule.step()
            step += 1
            curve.append(float(tokens.losses.detach().mean()))
            bar.update()
            bar.set_postfix(loss=f"{curve[-1]:.3f}")
            if step >= total:
                break
        epoch += 1
        adapter.train(False)
        if config.check_every and (epoch % config.check_every == 0 or step >= total) and certified_step is None:
            worst = float(evaluate_tokens(model, data, pad_id=pad_id, batch_size=eval_batch_size).losses.max())
            if worst < CERTIFY_LOSS:
                certified_step = step
                if config.stop_when_certified:
                    break
    bar.close()
    adapter.train(False)
    return TrainLog(step, curve, certified_step, stopped_early=step < total)
