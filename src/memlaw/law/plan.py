"""Planning with a fitted law: the rank a length needs, or the length a rank holds.

The law predicts ΔL; the final loss is L_init − ΔL, so planning also needs the initial loss of
the content to memorise. It comes from the probes the law was fitted on (interpolated in log ℓ
for the requested ratio), or from the caller. A mean final loss below ln 2 is necessary for
certified recall, not sufficient (one stubborn token can still derail greedy decoding), so a
plan is where to start probing, not a certificate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from memlaw.constants import CERTIFY_LOSS
from memlaw.errors import MemlawInputError
from memlaw.io import whole
from memlaw.law.certify import MIN_NEED, certify_probability, margin_for_confidence
from memlaw.law.cost import predict_seconds, predict_steps
from memlaw.law.fit import MemoryLaw

#: A rank no real adapter reaches: plans beyond it are refused rather than printed.
ABSURD_RANK = 1e6

BUDGET_CAVEAT = (
    "valid only for the stopping rule, placement, data and method the law was fitted on; "
    "a final loss below ln 2 is necessary for verbatim recall, not sufficient: confirm with memlaw probe"
)


@dataclass
class LawPlan:
    """One planned (rank, length) pair with what the law predicts for it."""

    rank: float
    length: float
    initial_loss: float
    predicted_final_loss: float
    #: 95 % interval of the planned quantity (rank or length) over the bootstrap refits.
    interval: tuple[float, float] | None
    trainable_params: float | None
    warnings: list[str] = field(default_factory=list)
    #: (steps, low, high) predicted to certify (or to stop) at this rank and length, with what.
    predicted_steps: tuple[float, float, float] | None = None
    steps_to: str | None = None
    #: Predicted wall seconds of those steps on ``host``.
    predicted_seconds: float | None = None
    host: str | None = None
    #: Probability that training at this rank certifies recall (the law's certification model).
    certify_probability: float | None = None

    def __post_init__(self) -> None:
        # counts stay integers wherever they are whole, so JSON says "rank": 2 and a plan's rank
        # passes straight to ``memlaw train --rank``
        self.rank, self.length = whole(self.rank), whole(self.length)
        if self.trainable_params is not None:
            self.trainable_params = whole(self.trainable_params)

    @property
    def stored_bits(self) -> float:
        """Bits the adapter must absorb: (L_init − predicted final loss)·ℓ nats, a loss being ≥ 0."""
        return (self.initial_loss - max(self.predicted_final_loss, 0.0)) * self.length / math.log(2)

    @property
    def bits_per_param(self) -> float | None:
        return None if not self.trainable_params else self.stored_bits / self.trainable_params

    def describe(self, asked: str) -> list[str]:
        """The plan in words; ``asked`` is what was planned: "rank" (for a length) or "length"."""
        interval = (
            ""
            if self.interval is None
            else f" (95% CI of the {asked} [{self.interval[0]:.4g}, {self.interval[1]:.4g}])"
        )
        if asked == "rank":
            head = (
                f"rank {self.rank:g} holds {self.length:g} tokens: "
                f"smallest whole rank predicted below the target{interval}"
            )
        elif math.isinf(self.length):
            head = f"rank {self.rank:g}: the law predicts no length limit (its offset b alone reaches the target)"
        else:
            head = f"rank {self.rank:g} holds about {self.length:.4g} tokens{interval}"
        lines = [
            head,
            f"  initial loss {self.initial_loss:.4g} → predicted final loss {self.predicted_final_loss:.4g} nats/token",
        ]
        if self.trainable_params is not None and math.isfinite(self.length):
            lines.append(
                f"  {self.trainable_params:,.0f} trainable parameters; {self.stored_bits:,.0f} bits stored, "
                f"{self.bits_per_param:.3g} bits per parameter"
            )
        if self.predicted_steps is not None:
            steps, low, high = self.predicted_steps
            timing = ""
            if self.predicted_seconds is not None:
                timing = (
                    f"; about {_duration(self.predicted_seconds)} on {self.host or 'the machine the probes ran on'}"
                )
            lines.append(f"  about {steps:,.0f} steps to {self.steps_to} (typically {low:,.0f} to {high:,.0f}){timing}")
        elif math.isfinite(self.length):
            lines.append(
                "  steps and time: not predicted (the law's probes did not stop on their own: --until converged)"
            )
        if self.certify_probability is not None:
            lines.append(
                f"  probability that training at this rank certifies recall: {self.certify_probability:.0%} "
                "(the law's certification model)"
            )
        lines += [f"warning: {w}" for w in self.warnings]
        lines.append(f"note: {BUDGET_CAVEAT}")
        return lines

    def to_dict(self) -> dict:
        return {
            "rank": self.rank, "length": self.length, "initial_loss": self.initial_loss,
            "predicted_final_loss": self.predicted_final_loss, "interval95": self.interval,
            "trainable_params": self.trainable_params, "stored_bits": self.stored_bits,
            "bits_per_param": self.bits_per_param, "predicted_steps": self.predicted_steps, "steps_to": self.steps_to,
            "predicted_seconds": self.predicted_seconds, "host": self.host,
            "certify_probability": self.certify_probability, "warnings": self.warnings,
            "caveat": BUDGET_CAVEAT,
        }  # fmt: skip


def plan_rank(
    law: MemoryLaw,
    length: float,
    *,
    ratio: float | None = None,
    initial_loss: float | None = None,
    target_loss: float = CERTIFY_LOSS,
    confidence: float | None = None,
) -> LawPlan:
    """The smallest whole rank whose predicted final loss at ``length`` is below ``target_loss``
    (with ``confidence``: that certifies with this probability, by the law's certification model)."""
    if not length >= 1:
        raise MemlawInputError(f"length must be at least one token, got {length}")
    start = initial_loss if initial_loss is not None else _initial_loss(law, length, ratio)
    need = float(needed_reduction(law, start, target_loss, confidence))
    per_rank = _params_per_rank(law)
    to_rank = (lambda x: x / per_rank) if law.x == "params" else (lambda x: x)
    u = law.form_.u_of(start)
    exact = to_rank(law.form_.x_for(law.params_, length, need, u))
    _check_full_rank(law, exact, length, start, target_loss, confidence)
    # The smallest integer rank strictly past the boundary, so its loss is below the target.
    rank = max(1, math.floor(exact) + 1)
    draws = [to_rank(law.form_.x_for(d, length, need, u)) for d in law.draws_]
    interval = _percentiles(draws)
    plan = LawPlan(
        rank=float(rank), length=float(length), initial_loss=start,
        predicted_final_loss=start - float(law.predict(_to_x(law, rank), length, start)),
        interval=interval, trainable_params=None if per_rank is None else rank * per_rank,
    )  # fmt: skip
    return _completed(plan, law, ratio)


def plan_length(
    law: MemoryLaw,
    rank: float,
    *,
    ratio: float | None = None,
    initial_loss: float | None = None,
    target_loss: float = CERTIFY_LOSS,
    confidence: float | None = None,
) -> LawPlan:
    """The longest ℓ a rank-``rank`` adapter is predicted to bring below ``target_loss`` (or to
    certify with probability ``confidence``)."""
    if not rank > 0:
        raise MemlawInputError(f"rank must be positive, got {rank}")
    full = law.reference_.max_rank
    if full is not None and rank > full:
        raise MemlawInputError(f"rank {rank:g} is beyond full rank ({full:g}, the model's width)")
    x = _to_x(law, rank)

    def length_at(params, start: float) -> float:
        need = float(needed_reduction(law, start, target_loss, confidence))
        return law.form_.length_at(params, x, need, law.form_.u_of(start))

    def solve(params) -> float:
        if initial_loss is not None:
            return length_at(params, initial_loss)
        # The initial loss itself depends (weakly) on ℓ: iterate to the fixed point.
        length = length_at(params, _initial_loss(law, None, ratio))
        for _ in range(50):
            if not math.isfinite(length):
                break
            updated = length_at(params, _initial_loss(law, length, ratio))
            if abs(updated - length) <= 1e-9 * length:
                break
            length = updated
        return length

    length = solve(law.params_)
    start = initial_loss if initial_loss is not None else _initial_loss(law, length, ratio)
    per_rank = _params_per_rank(law)
    plan = LawPlan(
        rank=float(rank), length=length, initial_loss=start,
        predicted_final_loss=start - float(law.predict(x, length, start)) if math.isfinite(length) else float("nan"),
        interval=_percentiles([solve(d) for d in law.draws_]),
        trainable_params=None if per_rank is None else rank * per_rank,
    )  # fmt: skip
    return _completed(plan, law, ratio)


def plan_items(
    law: MemoryLaw,
    rank: float,
    lengths: np.ndarray,
    initial_losses: np.ndarray,
    *,
    target_loss: float = CERTIFY_LOSS,
    confidence: float | None = None,
) -> tuple[int, LawPlan | None]:
    """How many leading items of a file a rank-``rank`` adapter is predicted to hold: the largest
    k whose first k items (``lengths[k-1]`` answer tokens at mean initial loss
    ``initial_losses[k-1]``) reach ``target_loss``, with the plan for them (None when k = 0)."""
    if not rank > 0:
        raise MemlawInputError(f"rank must be positive, got {rank}")
    lengths, initial_losses = np.asarray(lengths, dtype=np.float64), np.asarray(initial_losses, dtype=np.float64)
    reduction = law.predict(np.full_like(lengths, _to_x(law, rank)), lengths, initial_losses)
    final = initial_losses - reduction
    fitting = np.flatnonzero(reduction > needed_reduction(law, initial_losses, target_loss, confidence))
    if not len(fitting):
        return 0, None
    last = int(fitting[-1])
    per_rank = _params_per_rank(law)
    plan = LawPlan(
        rank=float(rank), length=float(lengths[last]), initial_loss=float(initial_losses[last]),
        predicted_final_loss=float(final[last]), interval=None,
        trainable_params=None if per_rank is None else rank * per_rank,
    )  # fmt: skip
    return last + 1, _completed(plan, law, None)


class BeyondFullRank(MemlawInputError):
    """No adapter of the law's kind holds the content: the rank it needs is beyond full rank."""


def _check_full_rank(law, exact: float, length: float, start: float, target_loss: float, confidence) -> None:
    """Refuse a rank no adapter has: beyond the law's full rank (the model's width, recorded by
    ``memlaw calibrate``), or beyond any sensible rank when the law does not know it."""
    full = law.reference_.max_rank
    if full is not None and not exact < full:
        holds = plan_length(law, full, initial_loss=start, target_loss=target_loss, confidence=confidence).length
        raise BeyondFullRank(
            f"{length:g} tokens do not fit even at full rank ({full:g}, the model's width): by the law, full rank "
            f"holds about {holds:,.0f} tokens of this content; split the data or use a larger placement"
        )
    if not exact < ABSURD_RANK:
        raise BeyondFullRank(
            f"the law needs a rank of {exact:.3g} for {length:g} tokens, beyond any adapter: split the data, "
            "or check that the law was fitted on this kind of content"
        )


def content_warning(law: MemoryLaw, initial_loss: float) -> list[str]:
    """Whether content at this mean initial loss resembles what the law was fitted on."""
    fitted = [row["initial_loss"] for row in law.reference_.initial_loss]
    if not fitted or min(fitted) - 0.5 <= initial_loss <= max(fitted) + 0.5:
        return []
    return [
        f"this content's initial loss ({initial_loss:.3g} nats/token) is outside the initial losses of the probes "
        f"the law was fitted on ({min(fitted):.3g} to {max(fitted):.3g}): the law has not been shown to predict "
        "such content, so treat the plan as a guess and check it with memlaw probe"
    ]


def _completed(plan: LawPlan, law: MemoryLaw, ratio: float | None) -> LawPlan:
    """``plan`` with its warnings and, for a finite length, the steps and time it costs and its
    probability of certifying."""
    if math.isfinite(plan.length) and not math.isfinite(plan.predicted_final_loss):
        raise MemlawInputError("the law's prediction overflows here: its constants are out of any usable range")
    plan.warnings = _extrapolation(law, rank=plan.rank, length=plan.length, ratio=ratio) + _below_zero(plan)
    if math.isfinite(plan.length):
        _add_cost(plan, law)
        model = law.certification_
        if model is not None and math.isfinite(plan.predicted_final_loss):
            plan.certify_probability = certify_probability(model, plan.initial_loss, plan.predicted_final_loss)
    return plan


def needed_reduction(law: MemoryLaw, initial_loss, target_loss: float, confidence: float | None):
    """The ΔL a plan needs: down to ``target_loss``, or, with ``confidence``, the capacity margin
    that certifies with that probability (never less than what a mean of ln 2 needs)."""
    if confidence is None:
        return np.asarray(initial_loss, dtype=np.float64) - target_loss
    margin = max(margin_for(law, confidence), 1.0)
    return margin * np.maximum(np.asarray(initial_loss, dtype=np.float64) - CERTIFY_LOSS, MIN_NEED)


def margin_for(law: MemoryLaw, confidence: float) -> float:
    """The capacity margin (predicted ΔL over what a mean of ln 2 needs) that certifies with
    probability ``confidence``, by the law's certification model."""
    if not 0 < confidence < 1:
        raise MemlawInputError(f"confidence must be between 0 and 1 (exclusive), got {confidence}")
    model = law.certification_
    if model is None:
        raise MemlawInputError(
            "this law has no certification model (its cells never both certified and failed): "
            "plan for a mean loss with target_loss=, or recalibrate with memlaw calibrate"
        )
    margin = margin_for_confidence(model, confidence)
    if margin is None:
        raise MemlawInputError("this law's certification model does not rise with capacity: it cannot plan for it")
    return margin


def _below_zero(plan: LawPlan) -> list[str]:
    """A predicted loss below 0 is the law's curve run past saturation, not a measurement."""
    if not plan.predicted_final_loss < 0:
        return []
    return [
        f"the predicted final loss ({plan.predicted_final_loss:.3g}) is below 0: the law's curve runs past "
        "the saturation it was fitted short of; read it as 'saturated' (bits stored counted at a loss of 0)"
    ]


def _add_cost(plan: LawPlan, law: MemoryLaw) -> None:
    """Steps and wall time from the law's cost models, when it has them (``memlaw.law.cost``)."""
    cost = law.cost_ or {}
    model, plan.steps_to = cost.get("steps_to_certify"), "certify"
    if model is None:
        model, plan.steps_to = cost.get("steps_to_stop"), "converge"
    if model is None:
        plan.steps_to = None
        return
    plan.predicted_steps = tuple(
        whole(round(s)) if math.isfinite(s) else s for s in predict_steps(model, plan.rank, plan.length)
    )
    if cost.get("seconds_per_step"):
        plan.predicted_seconds = predict_seconds(cost["seconds_per_step"], plan.length, plan.predicted_steps[0])
        plan.host = ", ".join(cost.get("hosts") or []) or None


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _percentiles(values: list[float]) -> tuple[float, float] | None:
    if not values:
        return None
    with np.errstate(invalid="ignore"):  # draws with no length limit (inf) make inf - inf inside percentile
        low, high = np.percentile(np.array(values), [2.5, 97.5])
    return float(low), float(high)


def _params_per_rank(law: MemoryLaw) -> float | None:
    return law.reference_.params_per_rank


def _to_x(law: MemoryLaw, rank: float) -> float:
    if law.x != "params":
        return rank
    per_rank = _params_per_rank(law)
    if per_rank is None:
        raise MemlawInputError("this law is in trainable parameters but records no parameters per rank")
    return rank * per_rank


def _initial_loss(law: MemoryLaw, length: float | None, ratio: float | None) -> float:
    """Mean initial loss the probes measured for ``ratio``, interpolated in log ℓ (flat outside)."""
    table = law.reference_.initial_loss
    if not table:
        raise MemlawInputError("this law records no initial losses: pass initial_loss= (mean loss before training)")
    ratios = sorted({row["ratio"] for row in table}, key=lambda r: -1 if r is None else r)
    if ratio is None:
        if len(ratios) > 1:
            raise MemlawInputError(
                f"this law was fitted on ratios {', '.join(map(str, ratios))}: pass ratio= or initial_loss="
            )
        ratio = ratios[0]
    rows = sorted((row for row in table if row["ratio"] == ratio), key=lambda row: row["length"])
    if not rows:
        raise MemlawInputError(
            f"no probes at ratio {ratio} in this law (it has {', '.join(map(str, ratios))}): "
            "pick one of those or pass initial_loss="
        )
    lengths = np.log([row["length"] for row in rows])
    losses = [row["initial_loss"] for row in rows]
    if length is None or not math.isfinite(length):
        at = lengths.mean()
    else:  # a root search may try lengths down to 0; the table is flat below its first row anyway
        at = math.log(max(length, 1.0))
    return float(np.interp(at, lengths, losses))


def _extrapolation(law: MemoryLaw, *, rank: float, length: float, ratio: float | None) -> list[str]:
    grid = law.grid_
    warnings = []
    ranks = grid.get("x", [])
    if law.x == "params" and ranks and _params_per_rank(law):
        ranks = [x / _params_per_rank(law) for x in ranks]
    for name, value, fitted in (("rank", rank, ranks), ("length", length, grid.get("length", []))):
        if fitted and not (min(fitted) <= value <= max(fitted)):
            warnings.append(
                f"{name} {value:.4g} is outside the fitted {name}s [{min(fitted):g}, {max(fitted):g}]: extrapolating"
            )
    return warnings
