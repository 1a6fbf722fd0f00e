"""What memorising costs: steps and seconds, measured on probes that stopped on their own.

Probes trained ``--until converged`` stop at certification or at a plateau; the steps they took
are the cost of reaching the law's ΔL. Fitted as power laws, steps ≈ a·r^p·ℓ^q (least squares
in logs), once over every such probe (steps to stop) and once over the certified ones (steps
to certify). Seconds per step are linear in ℓ, from the probes' own wall times (a stacked
probe's share of its pass) on the hosts that ran them: a prediction for that machine only.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from memlaw.law.points import LawPoints

#: Fewest probes a cost model is fitted on.
MIN_CELLS = 4


def fit_cost(points: LawPoints) -> dict[str, Any] | None:
    """Cost models from probes that stopped at certification or convergence (None if too few)."""
    if points.steps is None or len(points.rank) < MIN_CELLS:
        return None
    certified = ~np.isnan(points.certified_step) if points.certified_step is not None else np.zeros(0, bool)
    cost = {
        "steps_to_stop": _power_law(points.rank, points.length, points.steps),
        "steps_to_certify": (
            _power_law(points.rank[certified], points.length[certified], points.certified_step[certified])
            if certified.any()
            else None
        ),
        "seconds_per_step": _per_step(points),
        "cells": len(points.rank),
        "hosts": points.hosts,
    }
    return cost if cost["steps_to_stop"] or cost["steps_to_certify"] else None


def _power_law(rank: np.ndarray, length: np.ndarray, steps: np.ndarray) -> dict[str, float] | None:
    ok = steps > 0
    rank, length, steps = rank[ok], length[ok], steps[ok]
    if len(steps) < MIN_CELLS or len(set(rank.tolist())) < 2 or len(set(length.tolist())) < 2:
        return None
    design = np.column_stack([np.ones(len(steps)), np.log(rank), np.log(length)])
    (log_a, p, q), *_ = np.linalg.lstsq(design, np.log(steps), rcond=None)
    residual = np.log(steps) - design @ np.array([log_a, p, q])
    return {
        "a": float(math.exp(log_a)), "rank_exponent": float(p), "length_exponent": float(q),
        # typical factor between measured and fitted steps (exp of the RMS log residual)
        "spread": float(math.exp(math.sqrt(float(np.mean(residual**2))))), "cells": int(len(steps)),
    }  # fmt: skip


def _per_step(points: LawPoints) -> dict[str, float] | None:
    if points.seconds is None:
        return None
    ok = (points.steps > 0) & np.isfinite(points.seconds)
    length, per_step = points.length[ok], points.seconds[ok] / points.steps[ok]
    if not len(per_step):
        return None
    if len(set(length.tolist())) < 2:
        return {"intercept": float(np.median(per_step)), "per_token": 0.0}
    per_token, intercept = np.polyfit(length, per_step, 1)
    return {"intercept": float(intercept), "per_token": float(per_token)}


def predict_steps(model: dict[str, float], rank: float, length: float) -> tuple[float, float, float]:
    """(steps, low, high): the power law at (rank, length), and that divided / multiplied by its spread."""
    steps = model["a"] * rank ** model["rank_exponent"] * length ** model["length_exponent"]
    return steps, steps / model["spread"], steps * model["spread"]


def predict_seconds(model: dict[str, float], length: float, steps: float) -> float:
    return max(0.0, model["intercept"] + model["per_token"] * length) * steps
