"""How often a plan certifies: P(certified | capacity margin), fitted on calibration cells.

The law predicts the mean final loss; certification asks every answer token to reach p > 0.5,
which one stubborn token can deny at any mean. So a law also carries a logistic model of the
measured certification of its own cells (saturated ones included) against their capacity
margin m = ΔL̂ / (L_init − ln 2): the loss reduction the law predicts over the reduction a mean
of ln 2 needs. P = 1 / (1 + exp(−(a + s·m))). A plan states its probability of certifying,
and ``--confidence c`` plans for the margin at which P reaches c. The margin predicted the
calibration cells' certification better than the predicted final loss itself (leave-one-out
log-loss, docs/planning.md). A weak Gaussian prior on s keeps the fit finite when the cells
separate cleanly.
"""

from __future__ import annotations

import math

import numpy as np

from memlaw.constants import CERTIFY_LOSS

#: Fewest cells of each outcome (certified, not) the model is fitted on.
MIN_EACH = 2
#: Scale of the Gaussian prior on the slope: keeps cleanly separated cells from an infinite
#: slope, and hardly moves a slope the cells do determine.
SLOPE_PRIOR = 30.0
#: Smallest reduction (nats) a margin is taken over: content the base model already knows.
MIN_NEED = 0.01


def capacity_margin(initial_loss, predicted_final_loss):
    """ΔL̂ / (L_init − ln 2): how far past what a mean of ln 2 needs the law predicts the adapter goes."""
    start = np.asarray(initial_loss, dtype=np.float64)
    need = np.maximum(start - CERTIFY_LOSS, MIN_NEED)
    return (start - np.asarray(predicted_final_loss, dtype=np.float64)) / need


def fit_logistic(predictor, outcome) -> tuple[float, float] | None:
    """(a, s) of P(outcome) = 1 / (1 + exp(−(a + s·predictor))), with the slope's weak prior;
    None without ``MIN_EACH`` cells of each outcome."""
    predictor, outcome = np.asarray(predictor, dtype=np.float64), np.asarray(outcome, dtype=np.float64)
    known = np.isfinite(predictor) & np.isfinite(outcome)
    predictor, outcome = predictor[known], outcome[known]
    positives = int(outcome.sum())
    if positives < MIN_EACH or len(outcome) - positives < MIN_EACH:
        return None

    def penalised_nll(params: np.ndarray) -> float:
        z = params[0] + params[1] * predictor
        return float(np.sum(np.logaddexp(0, z) - outcome * z) + 0.5 * (params[1] / SLOPE_PRIOR) ** 2)

    from scipy.optimize import minimize  # here, as in fit.py: only fitting needs scipy

    intercept, slope = minimize(penalised_nll, np.zeros(2), method="BFGS").x
    return float(intercept), float(slope)


def fit_certification(initial_loss, predicted_final_loss, certified) -> dict | None:
    """The logistic model of certification against capacity margin (None without both outcomes)."""
    margin = capacity_margin(initial_loss, predicted_final_loss)
    outcome = np.asarray(certified, dtype=np.float64)
    fitted = fit_logistic(margin, outcome)
    if fitted is None:
        return None
    intercept, slope = fitted
    known = np.isfinite(margin) & np.isfinite(outcome)
    margin, positives = margin[known], int(outcome[known].sum())
    return {
        "predictor": "capacity margin", "intercept": float(intercept), "slope": float(slope),
        "cells": int(len(margin)), "certified": positives, "margin_range": [float(margin.min()), float(margin.max())],
    }  # fmt: skip


def certify_probability(model: dict, initial_loss: float, predicted_final_loss: float) -> float:
    margin = float(capacity_margin(initial_loss, predicted_final_loss))
    z = model["intercept"] + model["slope"] * margin
    return float(1 / (1 + math.exp(-min(max(z, -700.0), 700.0))))


def margin_for_confidence(model: dict, confidence: float) -> float | None:
    """The capacity margin at which certification reaches ``confidence`` (None if it never does:
    a slope that does not rise with the margin)."""
    if not model["slope"] > 0:
        return None
    return (math.log(confidence / (1 - confidence)) - model["intercept"]) / model["slope"]
