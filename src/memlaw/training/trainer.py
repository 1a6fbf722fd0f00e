"""The training loop of one adapter: forward, per-token loss, objective weights, backward, step.

Each phase runs under a ``torch.profiler.record_function`` label (``memlaw.forward``,
``.objective``, ``.backward``, ``.optimizer``, ``.check``): free when no profiler runs, and what
``benchmarks/small_probes.py`` reads to say where a step's time goes."""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch.profiler import record_function
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from memlaw.constants import CERTIFY_LOSS, CERTIFY_PROBABILITY, PLATEAU_CUTS, PLATEAU_FACTOR, UNTIL
from memlaw.data.encoding import EncodedData
from memlaw.engine.checkpointing import checkpointed_layers
from memlaw.engine.prefix_cache import PrefixCache
from memlaw.errors import MemlawInputError
from memlaw.measure.teacher_forced import batch_token_losses, evaluate_tokens
from memlaw.models.loading import bf16_autocast_available
from memlaw.placements.base import Adapter
from memlaw.training.memft import OnlyThreshold
from memlaw.training.objectives import SFT, Objective, copy_losses

#: The objective of a finishing phase (``finish_stubborn``): MemFT-OT, gradient only on the tokens
#: still at p <= 0.5 and a plain SFT step for a batch without any.
FINISHER = OnlyThreshold(threshold=CERTIFY_PROBABILITY)


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
    until: str = "budget"
    max_steps: int = 2000  # the cap of until="converged" (epochs and steps are then ignored)
    plateau_steps: int = 50  # steps without plateau_tol of improvement that make a plateau
    plateau_tol: float = 0.01  # nats of mean answer-token loss
    autocast: bool = False  # bf16 autocast of the training forward pass; measurements stay float32
    checkpoint_layers: bool = False  # recompute the adapted suffix's activations in backward
    #: until="converged": a copy that plateaus short of certification trains on with MemFT-OT
    #: (``CopyTraining.start_finishing``) instead of stopping
    finish_stubborn: bool = False

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "max_steps", "plateau_steps"):
            if getattr(self, name) <= 0:
                raise MemlawInputError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.steps is not None and self.steps <= 0:
            raise MemlawInputError(f"steps must be a positive integer, got {self.steps}")
        if not self.lr > 0:
            raise MemlawInputError(f"lr must be positive, got {self.lr}")
        if not self.plateau_tol > 0:
            raise MemlawInputError(f"plateau_tol must be a positive number of nats, got {self.plateau_tol}")
        if self.check_every < 0:
            raise MemlawInputError(f"check_every must be 0 (never) or a positive integer, got {self.check_every}")
        if self.until not in UNTIL:
            raise MemlawInputError(f"until must be {', '.join(UNTIL[:-1])} or {UNTIL[-1]}, got '{self.until}'")
        if self.until == "converged" and self.check_every == 0:
            raise MemlawInputError("until converged stops at certification too: it needs check_every > 0")
        if self.until == "converged" and self.steps is not None:
            raise MemlawInputError("steps= is a fixed budget; until converged caps the steps with max_steps=")
        if self.finish_stubborn and self.until != "converged":
            raise MemlawInputError(
                "finish_stubborn starts at a plateau short of certification: it needs until converged"
            )

    def total_steps(self, num_items: int, objective: Objective | None = None) -> int:
        if self.until == "converged":
            return self.max_steps
        if self.steps is not None:
            return self.steps
        return (objective or SFT()).total_steps(self.epochs, num_items, self.batch_size)


@dataclass
class TrainLog:
    steps: int
    loss_curve: list[float]  # mean answer-token cross-entropy of each step's batch (before its update)
    certified_step: int | None  # first step count after which a clean check found every p_t > 0.5
    stopped_early: bool
    stop_reason: str  # budget, certified, converged or max_steps
    #: Least-squares slope of the loss over the last plateau_steps steps, in nats per step at the
    #: full learning rate (divided by the mean share of it in force then).
    loss_slope: float
    #: Stopped by the budget or the cap while either plateau measure was still improving by more
    #: than its tolerance per plateau_steps (``Plateau``).
    budget_limited: bool
    #: The measure whose plateau ended training (the last one still improving): "stubborn excess"
    #: or "mean loss"; None for training that did not end on a plateau.
    plateau_measure: str | None = None
    #: Least-squares slope of the stubborn excess (nats summed over the tokens at p <= 0.5) over
    #: the epochs of the last plateau_steps steps, per step at the full learning rate.
    excess_slope: float = 0.0
    #: Steps trained before the finishing phase began (``finish_stubborn``); None when it did not.
    finish_step: int | None = None


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
    lrs: list[float] | None = None,
    race: bool = False,
    eval_batch_size: int = 16,
    cache: PrefixCache | None = None,
    progress: bool = False,
) -> list[TrainLog]:
    """Train the ``adapter.copies`` copies of ``adapter`` together, each as if it were alone.

    Copy j draws its batch order from ``seeds[j]`` (default: ``config.seed``); its batch rows
    form block j of every step's batch, its loss is normalised over its own tokens and its
    gradient clipped on its own, so it follows the trajectory it would follow alone. Its
    learning rate is ``lrs[j]`` (default: ``config.lr``). With ``race``, every copy stops as soon as
    one certifies (stop reason "outrun"): the learning-rate search needs no more.

    Certification: a copy's clean check runs after an epoch in which every training batch of
    that copy was already below ln 2 (a cheap trigger; without it a check would cost a forward
    pass over all items per epoch). When an epoch is a single batch, the adapter has no
    dropout and the forward pass runs in float32 (no autocast), each step's forward pass *is*
    that check for the previous step, so ``certified_step`` is exact; otherwise it is an upper
    bound at epoch granularity.
    """
    training = CopyTraining(
        adapter, data, objective, config, pad_id=pad_id, seeds=seeds, lrs=lrs, race=race,
        eval_batch_size=eval_batch_size, cache=cache,
    )  # fmt: skip
    return training.run(progress)


@dataclass
class CopyRun:
    """One copy's state through training: its optimizer and schedule, its batch order, what it
    logs, how it ended, and the running measures of the current epoch."""

    schedule: CopySchedule
    order: torch.Generator
    lr: float
    curve: list[float] = field(default_factory=list)  # mean loss of each step's batch (before its update)
    rates: list[float] = field(default_factory=list)  # learning rate in force at each step
    #: The stubborn measure at the end of each epoch: (steps so far, excess, stubborn tokens, learning rate).
    excess_curve: list[tuple[int, float, int, float]] = field(default_factory=list)
    certified: int | None = None
    reason: str | None = None  # set when the copy stops before the end
    below: bool = True  # every batch of this epoch under the threshold
    epoch_losses: list[float] = field(default_factory=list)
    epoch_excess: float = 0.0
    epoch_stubborn: int = 0
    finish_step: int | None = None  # steps before the finishing phase began

    def start_epoch(self) -> None:
        self.below, self.epoch_losses, self.epoch_excess, self.epoch_stubborn = True, [], 0.0, 0

    def record(self, mean: float, excess: float, stubborn: int) -> None:
        """One training batch's measures, before its update."""
        self.curve.append(mean)
        self.epoch_losses.append(mean)
        self.epoch_excess += excess
        self.epoch_stubborn += stubborn
        self.rates.append(self.schedule.lr)

    def end_epoch(self, step: int) -> None:
        """The epoch's stubborn measure logged and fed to the plateau rule, which may end the copy."""
        if self.reason is not None or not self.epoch_losses:
            return
        self.excess_curve.append((step, self.epoch_excess, self.epoch_stubborn, self.schedule.lr))
        mean = sum(self.epoch_losses) / len(self.epoch_losses)
        if self.schedule.end_epoch(mean, self.epoch_excess, self.epoch_stubborn):
            self.reason = "converged"

    def log(self, config: TrainConfig, total: int) -> TrainLog:
        end = "max_steps" if config.until == "converged" else "budget"
        slope = loss_slope(self.curve, self.rates, config.plateau_steps, self.lr)
        excess_slope, stubborn = stubborn_slope(self.excess_curve, len(self.curve), config.plateau_steps, self.lr)
        reason = self.reason or end
        # still learning at the end: either measure was improving by more than its plateau tolerance
        limited = reason == end and (
            -slope * config.plateau_steps > config.plateau_tol
            or -excess_slope * config.plateau_steps > config.plateau_tol * max(1, stubborn)
        )
        plateau = self.schedule.plateau
        measure = plateau.last_improved if reason == "converged" and plateau else None
        return TrainLog(
            len(self.curve), self.curve, self.certified, len(self.curve) < total, reason, slope, limited, measure,
            excess_slope, self.finish_step,
        )  # fmt: skip


class CopyTraining:
    """The loop of ``train_copies``: epochs of steps (forward, objective, record, update), each
    epoch ending with the plateau rule and, where due, a clean certification check."""

    def __init__(
        self, adapter: Adapter, data: EncodedData, objective: Objective, config: TrainConfig, *, pad_id: int,
        seeds: list[int] | None, lrs: list[float] | None, race: bool, eval_batch_size: int, cache: PrefixCache | None,
    ):  # fmt: skip
        if config.autocast and not bf16_autocast_available(adapter.model.device):
            raise MemlawInputError("autocast (bf16) needs a GPU or a CPU with bf16 support; train without it here")
        self.adapter, self.data, self.objective, self.config = adapter, data, objective, config
        self.pad_id, self.race, self.eval_batch_size, self.cache = pad_id, race, eval_batch_size, cache
        copies = adapter.copies
        self.total = config.total_steps(len(data.items), objective)
        seeds = [config.seed] * copies if seeds is None else seeds
        lrs = [config.lr] * copies if lrs is None else lrs
        # one optimizer and schedule per copy: each copy's learning rate follows its own curve
        schedules = [
            CopySchedule(adapter.copy_parameters(j), replace(config, lr=lrs[j]), self.total, len(data.items))
            for j in range(copies)
        ]
        torch.manual_seed(config.seed)  # adapter dropout draws from the global generator
        self.runs = [
            CopyRun(schedule, torch.Generator().manual_seed(seed), lr)
            for schedule, seed, lr in zip(schedules, seeds, lrs, strict=True)
        ]
        # a training forward pass is a clean check when it sees every item, without dropout, in float32
        self.forward_is_check = (
            config.check_every > 0 and len(data.items) <= config.batch_size and not adapter.stochastic
            and not config.autocast
        )  # fmt: skip
        self.stop_at_certified = config.until != "budget"
        self.step = self.epoch = 0

    @property
    def stopped(self) -> bool:
        return all(run.reason for run in self.runs)

    def run(self, progress: bool) -> list[TrainLog]:
        # closed on the way out of an interrupt too, so that the message after it starts a clean line
        with tqdm(total=self.total, desc="training", unit="step", disable=not progress, leave=False) as bar:
            while self.step < self.total and not self.stopped:
                self.train_epoch(bar)
                self.end_epoch()
        self.adapter.train(False)
        return [run.log(self.config, self.total) for run in self.runs]

    def train_epoch(self, bar: tqdm) -> None:
        self.adapter.train(True)
        for run in self.runs:
            run.start_epoch()
        size = self.config.batch_size
        orders = [
            self.objective.epoch_items(self.epoch, len(self.data.items), size, run.order, copy=j).split(size)
            for j, run in enumerate(self.runs)
        ]
        for per_copy in zip(*orders, strict=True):
            # stopped copies leave the batch (their orders still advance, as they would alone)
            active = [j for j, run in enumerate(self.runs) if run.reason is None]
            loss, stats = self.forward(active, [i for j in active for i in per_copy[j].tolist()])
            self.record(active, stats)
            if self.stopped:
                break
            self.update(loss, stats)
            self.step += 1
            bar.update()
            bar.set_postfix(loss=f"{self.runs[0].curve[-1] if self.runs[0].curve else float('nan'):.3f}")
            if self.step >= self.total:
                break
        self.epoch += 1
        self.adapter.train(False)

    def forward(self, active: list[int], indices: list[int]) -> tuple[torch.Tensor, CopyStats]:
        """The active copies' loss on their rows of the batch, and each copy's measures of it."""
        adapter, config, copies = self.adapter, self.config, self.adapter.copies
        model = adapter.model
        with (
            record_function("memlaw.forward"),
            torch.autocast(device_type=model.device.type, dtype=torch.bfloat16, enabled=config.autocast),
            checkpointed_layers(model, adapter.first_layer) if config.checkpoint_layers else nullcontext(),
            adapter.only(active) if len(active) < copies else nullcontext(),
        ):
            tokens = batch_token_losses(
                model, self.data, indices, pad_id=self.pad_id, cache=self.cache, copies=len(active)
            )
            if len(active) < copies:  # blocks of the active copies back to copy numbers
                tokens.copy = torch.tensor(active, device=tokens.copy.device)[tokens.copy]
        with record_function("memlaw.objective"):
            weights = self.objective.weights(tokens).detach()
            finishing = [run.finish_step is not None for run in self.runs]
            if any(finishing):  # those copies' tokens take the finisher's weights
                of_finishing = torch.tensor(finishing, device=tokens.copy.device)[tokens.copy]
                weights = torch.where(of_finishing, FINISHER.weights(tokens), weights)
            loss = copy_losses(tokens.losses, weights, tokens.copy, copies).sum()
            return loss, copy_stats(tokens.losses.detach(), tokens.copy, copies, weights)  # one sync

    def record(self, active: list[int], stats: CopyStats) -> None:
        """A batch's measures: the certification trigger, the check a forward pass can be, the curves."""
        for j in active:
            self.runs[j].below = self.runs[j].below and stats.worst[j] < CERTIFY_LOSS
        if self.forward_is_check:
            self.certify([j for j in active if self.runs[j].certified is None and stats.worst[j] < CERTIFY_LOSS])
        for j in active:
            if self.runs[j].reason is None:
                self.runs[j].record(stats.mean[j], stats.excess[j], stats.stubborn[j])

    def update(self, loss: torch.Tensor, stats: CopyStats) -> None:
        # Stopped copies, and copies whose objective weighs nothing this step, get no update:
        # without a gradient AdamW leaves their parameters, moments and step count alone, as it
        # does for a lone adapter that skips its backward (the reference's zero-backprop steps).
        idle = [j for j, run in enumerate(self.runs) if run.reason or stats.weighted[j] == 0]
        for run in self.runs:
            run.schedule.optimizer.zero_grad(set_to_none=True)
        if len(idle) < len(self.runs):
            with record_function("memlaw.backward"):
                loss.backward()
            with record_function("memlaw.optimizer"):
                self.adapter.drop_gradients(idle)
                self.adapter.clip_grad_norm_(self.config.max_grad_norm)
        with record_function("memlaw.optimizer"):
            for run in self.runs:
                run.schedule.step()

    def end_epoch(self) -> None:
        """The plateau rule for each copy, then a clean check of the copies whose batches were all
        below ln 2, when one is due."""
        for j, run in enumerate(self.runs):
            run.end_epoch(self.step)
            short = run.reason == "converged" and run.certified is None
            if short and self.config.finish_stubborn and run.finish_step is None:  # once per copy
                self.start_finishing(j)
        config = self.config
        due = config.check_every and (self.epoch % config.check_every == 0 or self.step >= self.total)
        pending = [j for j, run in enumerate(self.runs) if run.certified is None and run.below and run.reason is None]
        if not (due and pending) or self.forward_is_check:
            return
        with record_function("memlaw.check"):
            tokens = evaluate_tokens(
                self.adapter.model, self.data, pad_id=self.pad_id, batch_size=self.eval_batch_size, cache=self.cache,
                copies=self.adapter.copies,
            )  # fmt: skip
        self.certify([j for j in pending if float(tokens.of_copy(j).losses.max()) < CERTIFY_LOSS])

    def start_finishing(self, copy: int) -> None:
        """The finishing phase of a copy that plateaued short of certification: ``FINISHER`` at a
        tenth of the rate, from a fresh AdamW and plateau schedule, until certified, a plateau or
        the cap. Under SFT the few stubborn tokens left weigh little in the mean; at the full rate
        OT undid other items, and without its SFT steps it left tokens hovering at p 0.5
        (docs/convergence.md)."""
        run = self.runs[copy]
        run.finish_step, run.reason, run.lr = self.step, None, run.lr * PLATEAU_FACTOR
        config = replace(self.config, lr=run.lr)
        run.schedule = CopySchedule(self.adapter.copy_parameters(copy), config, self.total, len(self.data.items))

    def certify(self, copies: list[int]) -> None:
        """The one certification path: ``copies`` have every token at p > 0.5 after ``step`` updates."""
        for j in copies:
            self.runs[j].certified = self.step
            if self.stop_at_certified and self.runs[j].reason is None:
                self.runs[j].reason = "certified"
        if self.race and any(run.reason == "certified" for run in self.runs):
            for run in self.runs:
                run.reason = run.reason or "outrun"


class CopySchedule:
    """One copy's AdamW and learning-rate schedule: linear decay over the budget, or the plateau
    schedule of ``until="converged"`` (``Plateau``), which also says when it has converged."""

    def __init__(self, params: list[torch.nn.Parameter], config: TrainConfig, total: int, num_items: int):
        self.optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        self.plateau: Plateau | None = None
        self.linear = None
        if config.until == "converged":
            self.plateau = Plateau(self.optimizer, config, num_items)
        else:
            self.linear = get_linear_schedule_with_warmup(self.optimizer, num_warmup_steps=0, num_training_steps=total)

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def step(self) -> None:
        self.optimizer.step()
        if self.linear is not None:
            self.linear.step()

    def end_epoch(self, mean_loss: float, excess: float, stubborn: int) -> bool:
        """Feed the plateau schedule an epoch's measures; True once the last rate has plateaued."""
        return self.plateau is not None and self.plateau.end_epoch(mean_loss, excess, stubborn)


class Progress:
    """The plateau rule's test of one epoch: did the mean answer-token loss beat its best so far by
    ``tol`` nats, or the *stubborn excess* (the loss above ln 2 summed over the tokens still at
    p <= 0.5) beat its best by ``tol`` nats per stubborn token (counted at its best)? While every
    token is stubborn the second is the first; once few are left it watches them alone, whose
    climb toward p = 0.5 hardly moves the mean."""

    def __init__(self, tol: float):
        self.tol = tol
        self.best_mean = self.best_excess = math.inf
        self.best_stubborn = 0
        #: The measure that improved last: "mean loss" or "stubborn excess".
        self.last_improved: str | None = None

    def improved(self, mean_loss: float, excess: float, stubborn: int) -> bool:
        improved = False
        if mean_loss < self.best_mean - self.tol:
            self.best_mean, improved, self.last_improved = mean_loss, True, "mean loss"
        if excess < self.best_excess - self.tol * max(1, self.best_stubborn):
            self.best_excess, self.best_stubborn = excess, stubborn
            improved, self.last_improved = True, "stubborn excess"
        return improved


class Plateau:
    """Constant rate, cut tenfold at each plateau (at most ``PLATEAU_CUTS`` times); a plateau at the
    last rate is convergence. A plateau is ``plateau_steps`` steps (whole epochs) without an epoch
    that improved (``Progress``)."""

    def __init__(self, optimizer: torch.optim.Optimizer, config: TrainConfig, num_items: int):
        self.optimizer, self.progress = optimizer, Progress(config.plateau_tol)
        epoch_steps = -(-num_items // config.batch_size)
        self.patience = max(1, -(-config.plateau_steps // epoch_steps))  # epochs
        self.bad, self.cuts = 0, 0

    @property
    def last_improved(self) -> str | None:
        return self.progress.last_improved

    def end_epoch(self, mean_loss: float, excess: float, stubborn: int) -> bool:
        self.bad = 0 if self.progress.improved(mean_loss, excess, stubborn) else self.bad + 1
        if self.bad < self.patience:
            return False
        if self.cuts == PLATEAU_CUTS:
            return True
        self.cuts, self.bad = self.cuts + 1, 0
        for group in self.optimizer.param_groups:
            group["lr"] *= PLATEAU_FACTOR
        return False


def loss_slope(curve: list[float], rates: list[float], window: int, lr: float) -> float:
    """Least-squares slope of the last ``window`` losses in nats per step, divided by the mean
    share of the full learning rate in force then: under a decaying schedule a loss that barely
    moves because the rate is near zero is not a converged loss."""
    return _rate_slope(np.arange(len(curve[-window:])), curve[-window:], rates[-window:], lr)


def stubborn_slope(curve: list[tuple[int, float, int, float]], steps: int, window: int, lr: float) -> tuple[float, int]:
    """Slope of the stubborn excess over the epochs that ended in the last ``window`` steps (as
    ``loss_slope``), and the stubborn tokens of the last epoch."""
    if not curve:
        return 0.0, 0
    recent = [point for point in curve if point[0] > steps - window]
    at = np.array([point[0] for point in recent], dtype=float)
    return _rate_slope(at, [point[1] for point in recent], [point[3] for point in recent], lr), curve[-1][2]


def _rate_slope(x: np.ndarray, values: list[float], rates: list[float], lr: float) -> float:
    if len(values) < 2:
        return 0.0
    slope = float(np.polyfit(x, values, 1)[0])
    share = sum(rates) / len(rates) / lr
    return slope / share if share > 0 else slope


@dataclass
class CopyStats:
    """Per copy, of one batch: largest and mean token loss, the sum of its objective weights, and
    its stubborn tokens (p <= 0.5) with their loss above ln 2 summed (the stubborn excess)."""

    worst: list[float]
    mean: list[float]
    weighted: list[float]
    excess: list[float]
    stubborn: list[int]


def copy_stats(losses: torch.Tensor, copy: torch.Tensor, copies: int, weights: torch.Tensor) -> CopyStats:
    def per_copy(values: torch.Tensor) -> torch.Tensor:
        return losses.new_zeros(copies).index_add(0, copy, values)

    worst = losses.new_full((copies,), float("-inf")).scatter_reduce(0, copy, losses, reduce="amax")
    count = per_copy(torch.ones_like(losses))
    above = losses - CERTIFY_LOSS
    stubborn = above >= 0  # p <= 0.5
    stacked = torch.stack(
        [
            worst,
            per_copy(losses) / count,
            per_copy(weights),
            per_copy(above * stubborn),
            per_copy(stubborn.to(losses.dtype)),
        ]
    ).tolist()  # one sync
    return CopyStats(*stacked[:4], [int(n) for n in stacked[4]])
