"""Held-out extrapolation error, and alternative forms of the law fitted side by side."""

from __future__ import annotations

import numpy as np

from memlaw.errors import MemlawInputError
from memlaw.law.fit import MemoryLaw
from memlaw.law.points import LawPoints


def unsaturated(points: LawPoints, saturation_loss: float) -> LawPoints:
    return points.subset(~points.saturated(saturation_loss))


def heldout_error(
    points: LawPoints, make: type[MemoryLaw] | None = None, *, x: str = "rank", **options
) -> float | None:
    """RMSE on the cells at the largest x or the longest length, of a law fitted without them."""
    law_class = make or MemoryLaw
    probe = law_class(**options)
    usable = unsaturated(points, probe.saturation_loss)
    values = _x(usable, x)
    held = (values == values.max()) | (usable.length == usable.length.max())
    if held.all() or not held.any():
        return None
    try:
        law = law_class(**{**options, "bootstrap": 0}).fit(
            values[~held], usable.length[~held], usable.delta_loss[~held]
        )
    except MemlawInputError:
        return None
    residual = law.predict(values[held], usable.length[held]) - usable.delta_loss[held]
    return float(np.sqrt(np.mean(residual**2)))


def compare_forms(points: LawPoints, bootstrap: int = 200, seed: int = 0) -> list[dict]:
    """The law and its alternatives on the same points: fit quality and held-out error each."""
    candidates = [("rank, with offset b", "rank", {"form": "full"}), ("rank, no offset", "rank", {"form": "no_offset"})]
    if points.params is not None:
        candidates.append(("trainable parameters, with offset", "params", {"form": "full"}))
    rows = []
    for name, x, options in candidates:
        try:
            law = MemoryLaw(bootstrap=bootstrap, seed=seed, x_name=x, **options).fit_points(points)
        except MemlawInputError as err:
            rows.append({"name": name, "error": str(err)})
            continue
        rows.append({"name": name, "law": law, "heldout_rmse": heldout_error(points, x=x, seed=seed, **options)})
    if points.ratio is not None and len(set(points.ratio.tolist())) > 1:
        rows.append(_per_ratio(points, seed))
    return rows


def _per_ratio(points: LawPoints, seed: int) -> dict:
    """One law per ratio ρ: held-out error pooled over ratios, against the shared law's."""
    errors, laws = [], {}
    for ratio in sorted(set(points.ratio.tolist())):
        part = points.subset(points.ratio == ratio)
        try:
            laws[ratio] = MemoryLaw(bootstrap=0, seed=seed).fit(
                part.rank, part.length, part.delta_loss, part.final_loss
            )
        except MemlawInputError as err:
            return {"name": "one law per ratio", "error": f"ratio {ratio}: {err}"}
        error = heldout_error(part, seed=seed)
        if error is not None:
            errors.append(error)
    heldout = float(np.sqrt(np.mean(np.square(errors)))) if errors else None
    return {"name": "one law per ratio", "laws": laws, "heldout_rmse": heldout}


def _x(points: LawPoints, x: str) -> np.ndarray:
    if x == "params":
        if points.params is None:
            raise MemlawInputError("these points have no trainable-parameter counts: fit in rank")
        return points.params
    return points.rank
