"""How often a plan certifies: P(certified | predicted final loss), fitted on calibration cells.

The law predicts the mean final loss; certification asks every answer token to reach p > 0.5,
which one stubborn token can deny at any mean. So a law also carries a logistic model of the
measured certification of its own cells (saturated ones included) against the final loss the
law predicts for them: P = 1 / (1 + exp(−(a + s·L̂))). A plan then states its probability
of certifying, and ``--confidence c`` plans for the largest predicted final loss at which
P reaches c. A weak Gaussian prior on s keeps the fit finite when the cells separate cleanly.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize

#: Fewest cells of each outcome (certified, not) the model is fitted on.
MIN_EACH = 2
#: Scale (per nat) of the Gaussian prior on the slope: keeps cleanly separated cells from an
#: infinite slope, and hardly moves a slope the cells do determine.
SLOPE_PRIOR = 10.0


def fit_certification(predicted_final_loss, certified) -> dict | None:
    """The logistic model of certification against predicted final loss (None without both outcomes)."""
    loss = np.asarray(predicted_final_loss, dtype=np.float64)
    outcome = np.asarray(certified, dtype=np.float64)
    known = np.isfinite(loss) & np.isfinite(outcome)
    loss, outcome = loss[known], outcome[known]
    positives = int(outcome.sum())
    if positives < MIN_EACH or len(outcome) - positives < MIN_EACH:
        return None

    def penalised_nll(params: np.ndarray) -> float:
        z = params[0] + params[1] * loss
        return float(np.sum(np.logaddexp(0, z) - outcome * z) + 0.5 * (params[1] / SLOPE_PRIOR) ** 2)

    intercept, slope = minimize(penalised_nll, np.zeros(2), method="BFGS").x
    return {
        "intercept": float(intercept), "slope": float(slope), "cells": int(len(loss)), "certified": positives,
        "loss_range": [float(loss.min()), float(loss.max())],
    }  # fmt: skip


def certify_probability(model: dict, predicted_final_loss: float) -> float:
    z = model["intercept"] + model["slope"] * predicted_final_loss
    return float(1 / (1 + math.exp(-z)))


def loss_for_confidence(model: dict, confidence: float) -> float | None:
    """The predicted final loss at which certification reaches ``confidence`` (None if it never does:
    a slope that does not fall with the loss)."""
    if not model["slope"] < 0:
        return None
    return (math.log(confidence / (1 - confidence)) - model["intercept"]) / model["slope"]
