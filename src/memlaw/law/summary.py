"""The fit described in words: constants, quality, held-out error, alternatives, efficiency.

``memlaw fit`` prints these lines and ``memlaw report`` writes them into its summary, so the
two never disagree.
"""

from __future__ import annotations

import numpy as np

from memlaw.law.certify import margin_for_confidence
from memlaw.law.compare import compare_forms, heldout_error
from memlaw.law.fit import MemoryLaw
from memlaw.law.plan import BUDGET_CAVEAT
from memlaw.law.points import LawPoints


def describe_fit(law: MemoryLaw, points: LawPoints) -> list[str]:
    heldout = heldout_error(points, law)
    lines = [f"{law.n_points_} points fitted, {law.excluded_words()}", law.formula()]
    for name, value in law.constants_.items():
        low, high = law.ci_.get(name, (float("nan"), float("nan")))
        lines.append(f"  {name:5s} = {value!r}   95% CI [{low:.6g}, {high:.6g}]")
    held = "n/a" if heldout is None else f"{heldout:.4g}"
    lines.append(f"R² = {law.r2_:.5f}, RMSE = {law.rmse_:.4g} nats, held-out RMSE (largest rank / longest ℓ) = {held}")
    lines.append("alternatives on the same points (held-out RMSE, lower is better):")
    scored = []
    for row in compare_forms(points, law.clone(bootstrap=0)):
        if "error" in row:
            lines.append(f"  {row['name']:55s} not fitted: {row['error']}")
            continue
        score = row["heldout_rmse"]
        if score is not None:
            scored.append((score, row["name"]))
        lines.append(f"  {row['name']:55s} {'n/a' if score is None else f'{score:.4g}'}")
    if scored:
        lines.append(f"best by held-out error: {min(scored)[1]}")
    fitted = points.subset(law.usable(points))
    efficiency = fitted.bits_per_param()
    if efficiency is not None and len(efficiency):
        best = int(np.argmax(efficiency))
        lines.append(
            f"memory efficiency of the fitted cells (ΔL·ℓ/ln 2 bits per trainable parameter): median "
            f"{np.median(efficiency):.3g}, highest {efficiency[best]:.3g} at rank {fitted.rank[best]:g}, "
            f"ℓ {fitted.length[best]:g} (whole-model anchors in the literature: about 2 and 3.6)"
        )
    lines += describe_cost(law.cost_)
    lines += describe_certification(law.certification_)
    lines += [f"warning: {w}" for w in law.warnings_]
    lines.append(
        f"stopping rule: until {law.provenance_.get('until', 'budget')}; learning rate: "
        f"{law.provenance_.get('lr_schedule', 'not recorded')}"
    )
    lines.append(BUDGET_CAVEAT.split(";")[0])
    return lines


def describe_cost(cost: dict | None) -> list[str]:
    """The cost models in words (``memlaw.law.cost``)."""
    if not cost:
        return ["cost: not fitted (needs probes that stopped at certification or convergence: --until converged)"]
    lines = []
    for name, words in (("steps_to_stop", "steps to stop"), ("steps_to_certify", "steps to certify")):
        model = cost.get(name)
        if model:
            lines.append(
                f"{words} ≈ {model['a']:.3g}·r^{model['rank_exponent']:.3g}·ℓ^{model['length_exponent']:.3g} "
                f"(×/÷ {model['spread']:.2f} typical, {model['cells']} cells)"
            )
    per_step = cost.get("seconds_per_step")
    if per_step:
        lines.append(
            f"seconds per step ≈ {per_step['intercept']:.3g} + {per_step['per_token']:.3g}·ℓ "
            f"on {', '.join(cost.get('hosts') or ['the machine that ran the probes'])}"
        )
    return lines


def describe_certification(model: dict | None) -> list[str]:
    """The certification model in one line, with the capacity margin a 90 % plan aims for."""
    if model is None:
        return ["certification model: not fitted (needs cells that certified and cells that did not)"]
    margin = margin_for_confidence(model, 0.9)
    aim = "never reached" if margin is None else f"{margin:.3g}"
    return [
        f"certification model: P(certified) = 1/(1+exp(−({model['intercept']:.3g} {model['slope']:+.3g}·m))), "
        f"m = predicted ΔL / (L_init − ln 2), over {model['cells']} cells ({model['certified']} certified); "
        f"90% at m = {aim}"
    ]
