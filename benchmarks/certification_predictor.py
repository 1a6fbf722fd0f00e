"""Which measure of a plan predicts certification best? Leave-one-out on calibration cells.

A law's certification model is a logistic in one predictor. This compares two on the cells of
a calibration store (never on held-out data sets): the final loss the law predicts, and the
capacity margin (predicted ΔL over the ΔL a mean loss of ln 2 needs). Each cell is predicted by
a logistic fitted on the others; the mean log-loss (lower is better) and the misclassified
cells at P = 0.5 are printed.

    python benchmarks/certification_predictor.py --law src/memlaw/laws/smollm2-135m-instruct.json \\
        --from runs/calibrate/calibration.db
"""

from __future__ import annotations

import argparse

import numpy as np

from memlaw.law.certify import capacity_margin, fit_logistic
from memlaw.law.library import load_law
from memlaw.law.points import load_points


def leave_one_out(predictor: np.ndarray, outcome: np.ndarray) -> tuple[float, int]:
    """(mean log-loss, misclassified cells) of each cell predicted by a logistic fitted on the rest."""
    losses, wrong = [], 0
    for i in range(len(outcome)):
        rest = np.arange(len(outcome)) != i
        fitted = fit_logistic(predictor[rest], outcome[rest])
        if fitted is None:
            continue
        p = 1 / (1 + np.exp(-(fitted[0] + fitted[1] * predictor[i])))
        p = min(max(p, 1e-9), 1 - 1e-9)
        losses.append(-(outcome[i] * np.log(p) + (1 - outcome[i]) * np.log(1 - p)))
        wrong += int((p > 0.5) != bool(outcome[i]))
    return float(np.mean(losses)), wrong


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--law", required=True, help="the law whose predictions are the predictors")
    parser.add_argument("--from", dest="source", required=True, help="results store of the calibration cells")
    args = parser.parse_args()
    law, points = load_law(args.law), load_points(args.source)
    predicted = points.initial_loss - law.predict(points.rank, points.length, points.initial_loss)
    outcome = points.certified
    print(f"{len(outcome)} cells, {int(outcome.sum())} certified")
    for name, predictor in (
        ("predicted final loss", predicted),
        ("capacity margin", capacity_margin(points.initial_loss, predicted)),
    ):
        log_loss, wrong = leave_one_out(predictor, outcome)
        print(f"{name:22s} leave-one-out log-loss {log_loss:.3f}, misclassified {wrong}/{len(outcome)}")


if __name__ == "__main__":
    main()
