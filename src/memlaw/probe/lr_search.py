"""The learning rate for the adapter at hand, by a short range test before training.

One rate does not fit every adapter: lr 0.03 certifies LoRA on one layer's MLP but leaves
LoRA on the MLPs of all 30 layers of SmolLM2 at a loss of 1.5 nats. Before training, the
search trains ``len(LR_FACTORS)`` copies of the probe's adapter stacked in one pass, each at the
probe's rate times one factor, for ``LR_SEARCH_STEPS`` steps at a constant rate, and keeps the
rate whose copy ends with the lowest loss (mean of its last steps; within 1 % of it, the
smallest such rate, since a short test favours large rates). The copies start from the
same initial weights and see the same batches, so they differ by their rate alone. Copies that
certify within the test score best, and the search ends as soon as one does. It costs at most
5 copies for 20 steps, 5 % of the default cap of 2,000 steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from memlaw.data.encoding import EncodedData
from memlaw.engine.prefix_cache import build_prefix_cache
from memlaw.models.loading import LoadedModel
from memlaw.placements import PLACEMENTS
from memlaw.probe.config import ProbeConfig
from memlaw.training.methods import make_objective
from memlaw.training.trainer import train_copies

#: Candidate rates, as multiples of the probe's own ``lr``.
LR_FACTORS = (3.0, 1.0, 1 / 3, 1 / 9, 1 / 27)
#: Steps each candidate trains.
LR_SEARCH_STEPS = 20
#: The score of a candidate: its mean loss over its last steps (batches differ step to step).
SCORED_STEPS = 5
#: Scores within this share of the lowest count as tied, and the smallest of their rates is kept.
#: On PhoneBook-480 with LoRA on q_proj and v_proj of every layer, 0.03 scored 2.076 and 0.01
#: scored 2.082; 0.03 then stalled at 2.27 nats while 0.01 certified at step 414.
NEAR_TIE = 0.01


@dataclass
class LrChoice:
    lr: float
    #: Each candidate rate with its score (mean loss of its last steps; inf when it diverged).
    scores: dict[float, float]
    steps: int

    def to_dict(self) -> dict:
        return {"lr": self.lr, "steps": self.steps, "scores": [[lr, score] for lr, score in self.scores.items()]}


def search_lr(config: ProbeConfig, loaded: LoadedModel, data: EncodedData) -> LrChoice:
    """Train the candidate rates side by side on ``config``'s adapter and keep the best."""
    model, pad_id = loaded.model, loaded.tokenizer.pad_token_id
    rates = [config.lr * factor for factor in LR_FACTORS]
    placement = PLACEMENTS[config.placement]
    adapter = placement.stack(model, [config.placement_config()] * len(rates), [config.seed] * len(rates))
    try:
        cache = None
        if config.prefix_cache:
            cache = build_prefix_cache(model, data, adapter, pad_id=pad_id, batch_size=config.eval_batch_size)
        # a constant rate for the whole test: no plateau can cut it within LR_SEARCH_STEPS
        short = replace(
            config.train_config(), until="converged", max_steps=LR_SEARCH_STEPS,
            plateau_steps=max(config.plateau_steps, LR_SEARCH_STEPS + 1),
        )  # fmt: skip
        logs = train_copies(
            adapter, data, make_objective(config.method, config.method_options), short,
            pad_id=pad_id, lrs=rates, race=True, eval_batch_size=config.eval_batch_size, cache=cache,
        )  # fmt: skip
    finally:
        adapter.remove()
    scores, steps = {}, {}
    for rate, log in zip(rates, logs, strict=True):
        tail = log.loss_curve[-SCORED_STEPS:]
        score = sum(tail) / len(tail) if tail else math.inf
        # a copy that certified within the test is as good as a rate gets
        scores[rate] = 0.0 if log.stop_reason == "certified" else (score if math.isfinite(score) else math.inf)
        steps[rate] = log.steps
    lowest = min(scores.values())
    if lowest == 0.0:  # copies that certified: the first to certify, then the smaller rate
        best = min((rate for rate in scores if scores[rate] == 0.0), key=lambda rate: (steps[rate], rate))
    else:  # a short test favours large rates: near-ties go to the smallest rate among them
        best = min(rate for rate in scores if scores[rate] <= lowest * (1 + NEAR_TIE))
    return LrChoice(best, scores, max(log.steps for log in logs))
