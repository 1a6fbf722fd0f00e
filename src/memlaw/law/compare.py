"""Held-out extrapolation error, and alternative forms of the law fitted side by side."""

from __future__ import annotations

import numpy as np

from memlaw.errors import MemlawInputError
from memlaw.law.fit import MemoryLaw
from memlaw.law.forms import FORMS
from memlaw.law.points import LawPoints

#: Largest over smallest initial loss from which the points hold different kinds of content.
CONTENT_SPREAD = 1.5


def heldout_error(points: LawPoints, law: MemoryLaw) -> float | None:
    """RMSE on the cells at the largest x or the longest length, of a clone of ``law`` fitted without them."""
    usable = points.subset(law.usable(points))
    values = law.x_of(usable)
    held = (values == values.max()) | (usable.length == usable.length.max())
    if held.all() or not held.any():
        return None
    try:
        law = law.clone(bootstrap=0).fit(
            values[~held],
            usable.length[~held],
            usable.delta_loss[~held],
            initial_loss=_part(usable.initial_loss, ~held),
        )
    except MemlawInputError:
        return None
    residual = (
        law.predict(values[held], usable.length[held], _part(usable.initial_loss, held)) - usable.delta_loss[held]
    )
    return float(np.sqrt(np.mean(residual**2)))


def varied_content(points: LawPoints) -> bool:
    """Whether the points' content differs enough in initial loss for a covariate to be learnt:
    random tokens alone span about 8 % (13.5 to 14.6 nats on the default model)."""
    start = points.initial_loss
    return start is not None and bool(np.all(np.isfinite(start))) and start.max() >= CONTENT_SPREAD * start.min()


def _part(values: np.ndarray | None, keep: np.ndarray) -> np.ndarray | None:
    return None if values is None else values[keep]


def compare_forms(points: LawPoints, law: MemoryLaw) -> list[dict]:
    """``law``'s settings with every form, in rank and (when known) in parameters, and one law
    per ratio ρ, on the same points: the fitted law and its held-out error each."""
    xs = ["rank"] + (["params"] if points.params is not None else [])
    rows = []
    for x in xs:
        for form in FORMS.values():
            if form.covariate is not None and not varied_content(points):
                continue
            name = f"{'rank' if x == 'rank' else 'trainable parameters'}, {form.description}"
            candidate = law.clone(form=form.name, x=x)
            try:
                candidate.fit_points(points)
            except MemlawInputError as err:
                rows.append({"name": name, "error": str(err)})
                continue
            rows.append({"name": name, "law": candidate, "heldout_rmse": heldout_error(points, candidate)})
    if points.ratio is not None and len(set(points.ratio.tolist())) > 1:
        rows.append(_per_ratio(points, law.clone(bootstrap=0)))
    return rows


def _per_ratio(points: LawPoints, law: MemoryLaw) -> dict:
    """One law per ratio ρ: held-out error pooled over ratios, against the shared law's."""
    errors, laws = [], {}
    for ratio in sorted(set(points.ratio.tolist())):
        part = points.subset(points.ratio == ratio)
        try:
            laws[ratio] = law.clone().fit_points(part)
        except MemlawInputError as err:
            return {"name": "one law per ratio", "error": f"ratio {ratio}: {err}"}
        error = heldout_error(part, laws[ratio])
        if error is not None:
            errors.append(error)
    heldout = float(np.sqrt(np.mean(np.square(errors)))) if errors else None
    return {"name": "one law per ratio", "laws": laws, "heldout_rmse": heldout}


#: The law forms calibration tries: the content's initial loss as a covariate, raw or above ln 2.
#: The one with the lower held-out error is kept (docs/planning.md).
CALIBRATION_FORMS = ("initial", "excess")


def fit_calibration(points: LawPoints, law: MemoryLaw, *, max_rank: int, layers: int) -> MemoryLaw:
    """``law`` fitted with the calibration form that predicts its held-out cells best (forms are
    compared without bootstrap; only the chosen one pays for its intervals), knowing the model's
    full rank (plans never go beyond it) and depth (so plans can read a layer counted from the top)."""
    errors = [heldout_error(points, law.clone(form=form, bootstrap=0).fit_points(points)) for form in CALIBRATION_FORMS]
    scored = [(error, i) for i, error in enumerate(errors) if error is not None]
    fitted = law.clone(form=CALIBRATION_FORMS[min(scored)[1] if scored else 0]).fit_points(points)
    fitted.reference_ = fitted.reference_.with_model_shape(max_rank=max_rank, layers=layers)
    return fitted
