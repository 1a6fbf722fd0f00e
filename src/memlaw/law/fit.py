"""Fitting ΔL = C·x^α·ℓ^(−β) + b (x = rank, or trainable parameters) robustly and fast.

For fixed (α, β) the law is linear in C and b, so they come in closed form by least
squares; a grid over (α, β) finds the basin, and ``scipy.optimize.least_squares`` refines
all four together (optionally with a Huber loss). Bootstrap intervals refit resampled
points from the point estimate, which keeps 1000 resamples to seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from memlaw.constants import CERTIFY_LOSS
from memlaw.errors import MemlawInputError
from memlaw.law.points import LawPoints

FORMS = ("full", "no_offset")
LOSSES = ("squares", "huber")
#: Exponent grid searched before refinement.
EXPONENT_GRID = np.linspace(0.02, 3.0, 60)


def law_curve(params, x, length) -> np.ndarray:
    """ΔL predicted by constants ``params`` = (C, α, β, b) at x (rank or parameters) and ℓ."""
    c, alpha, beta, b = params
    return c * np.asarray(x, dtype=np.float64) ** alpha * np.asarray(length, dtype=np.float64) ** (-beta) + b


def x_for(params, length: float, need: float) -> float:
    """The x at which the law's ΔL equals ``need`` + b at this ℓ (0 when b alone gives it)."""
    c, alpha, beta, b = params
    if need - b <= 0:
        return 0.0
    return float(((need - b) * length**beta / c) ** (1 / alpha))


def length_at(params, x: float, need: float) -> float:
    """The ℓ at which the law's ΔL at this x falls to ``need`` (inf when it never does)."""
    c, alpha, beta, b = params
    if need - b <= 0:
        return float("inf")
    return float((c * x**alpha / (need - b)) ** (1 / beta))


@dataclass
class _Fit:
    params: np.ndarray  # C, alpha, beta, b
    sse: float


class MemoryLaw:
    """``MemoryLaw(form=..., loss=...).fit(rank, length, delta_loss, final_loss)`` then ``law.C_`` etc.

    Points whose final loss is below ``saturation_loss`` (default ln 2: every token is then
    likely certified, so ΔL is capped by L_init rather than by capacity) are excluded from the
    fit and listed in ``excluded_``.
    """

    def __init__(
        self,
        *,
        form: str = "full",
        loss: str = "squares",
        huber_scale: float = 0.1,
        saturation_loss: float = CERTIFY_LOSS,
        bootstrap: int = 1000,
        seed: int = 0,
        x_name: str = "rank",
    ):
        if form not in FORMS:
            raise MemlawInputError(f"unknown law form '{form}': use {' or '.join(FORMS)}")
        if loss not in LOSSES:
            raise MemlawInputError(f"unknown fit loss '{loss}': use {' or '.join(LOSSES)}")
        self.form, self.loss, self.huber_scale = form, loss, huber_scale
        self.saturation_loss, self.bootstrap, self.seed = saturation_loss, bootstrap, seed
        self.x_name_ = x_name  # what x is: "rank" or "params" (trainable parameters)
        self.reference_: dict = {}
        self.provenance_: dict = {}

    # -- fitting -----------------------------------------------------------------------------
    def fit(self, x, length, delta_loss, final_loss=None) -> MemoryLaw:
        x, length, delta = (np.asarray(v, dtype=np.float64) for v in (x, length, delta_loss))
        if not (x.shape == length.shape == delta.shape) or x.ndim != 1:
            raise MemlawInputError("rank, length and delta_loss must be equal-length lists")
        for name, values in (("rank", x), ("length", length), ("delta_loss", delta)):
            if not np.all(np.isfinite(values)):
                raise MemlawInputError(f"{name} holds NaN or infinite values")
        if np.any(x <= 0) or np.any(length <= 0):
            raise MemlawInputError("ranks and lengths must be positive")
        keep = np.ones_like(delta, dtype=bool)
        if final_loss is not None:
            final = np.asarray(final_loss, dtype=np.float64)
            keep = ~(final < self.saturation_loss)
        self.excluded_ = np.flatnonzero(~keep)
        self.n_excluded_ = len(self.excluded_)
        needed = 3 if self.form == "no_offset" else 4
        if keep.sum() == 0:
            raise MemlawInputError(
                f"all {len(delta)} points are saturated (final loss < {self.saturation_loss:.3f}): nothing to fit"
            )
        if keep.sum() < needed + 1:
            raise MemlawInputError(f"too few points to fit: {int(keep.sum())} unsaturated, need at least {needed + 1}")
        self.x_, self.length_, self.delta_ = x[keep], length[keep], delta[keep]
        self.grid_ = {"x": sorted(set(self.x_.tolist())), "length": sorted(set(self.length_.tolist()))}
        best = self._fit_points(self.x_, self.length_, self.delta_)
        self.C_, self.alpha_, self.beta_, self.b_ = (float(v) for v in best.params)
        predicted = self.predict(self.x_, self.length_)
        residual = self.delta_ - predicted
        total = np.sum((self.delta_ - self.delta_.mean()) ** 2)
        self.r2_ = float(1 - np.sum(residual**2) / total) if total > 0 else float("nan")
        self.rmse_ = float(np.sqrt(np.mean(residual**2)))
        self.n_points_ = int(keep.sum())
        self.ci_ = self._bootstrap(best.params)
        return self

    def x_of(self, points: LawPoints) -> np.ndarray:
        """The points' x for this law: their ranks, or their trainable-parameter counts."""
        if self.x_name_ == "rank":
            return points.rank
        if points.params is None:
            raise MemlawInputError("these points have no trainable-parameter counts: fit in rank")
        return points.params

    def fit_points(self, points: LawPoints) -> MemoryLaw:
        """Fit to measured points, keeping their provenance and what planning needs."""
        self.fit(self.x_of(points), points.length, points.delta_loss, points.final_loss)
        self.provenance_, self.reference_ = points.provenance, points.planning_reference()
        return self

    def _fit_points(self, x: np.ndarray, length: np.ndarray, delta: np.ndarray, start=None) -> _Fit:
        if start is None:
            start = self._grid_start(x, length, delta)
        offset = self.form == "full"

        def residuals(p: np.ndarray) -> np.ndarray:
            return law_curve(p if offset else (*p, 0.0), x, length) - delta

        p0 = start if offset else start[:3]
        solution = least_squares(
            residuals, p0, loss="huber" if self.loss == "huber" else "linear", f_scale=self.huber_scale, method="trf"
        )
        params = np.append(solution.x, 0.0) if not offset else solution.x
        return _Fit(params, float(np.sum(residuals(solution.x) ** 2)))

    def _grid_start(self, x: np.ndarray, length: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """(C, α, β, b) minimising the squared error over the exponent grid, C and b in closed form."""
        best, best_sse = None, np.inf
        log_x, log_l = np.log(x), np.log(length)
        for alpha in EXPONENT_GRID:
            for beta in EXPONENT_GRID:
                feature = np.exp(alpha * log_x - beta * log_l)
                design = np.column_stack([feature, np.ones_like(feature)]) if self.form == "full" else feature[:, None]
                coef, *_ = np.linalg.lstsq(design, delta, rcond=None)
                sse = float(np.sum((design @ coef - delta) ** 2))
                if sse < best_sse:
                    b = coef[1] if self.form == "full" else 0.0
                    best, best_sse = np.array([coef[0], alpha, beta, b]), sse
        assert best is not None
        return best

    def _bootstrap(self, point: np.ndarray) -> dict[str, tuple[float, float]]:
        """95 % percentile intervals from refits of resampled points, started at the point estimate."""
        self.draws_ = np.empty((0, 4))
        if self.bootstrap <= 0:
            return {}
        rng = np.random.default_rng(self.seed)
        n = len(self.delta_)
        draws = []
        for _ in range(self.bootstrap):
            pick = rng.integers(0, n, n)
            draws.append(self._fit_points(self.x_[pick], self.length_[pick], self.delta_[pick], start=point).params)
        self.draws_ = np.array(draws)
        low, high = np.percentile(self.draws_, [2.5, 97.5], axis=0)
        return {
            name: (float(lo), float(hi)) for name, lo, hi in zip(("C", "alpha", "beta", "b"), low, high, strict=True)
        }

    # -- using the law -----------------------------------------------------------------------
    @property
    def params_(self) -> tuple[float, float, float, float]:
        return (self.C_, self.alpha_, self.beta_, self.b_)

    def predict(self, x, length) -> np.ndarray:
        return law_curve(self.params_, x, length)

    def rank_for(self, length: float, initial_loss: float, target_loss: float = CERTIFY_LOSS) -> float:
        """Smallest x (rank) whose predicted final loss L_init − ΔL reaches ``target_loss``."""
        return x_for(self.params_, length, initial_loss - target_loss)

    def length_for(self, x: float, initial_loss: float, target_loss: float = CERTIFY_LOSS) -> float:
        """Longest ℓ whose predicted final loss at this x (rank) still reaches ``target_loss``."""
        return length_at(self.params_, x, initial_loss - target_loss)

    # -- persistence ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-ready law with its provenance and what planning needs besides the constants
        (measured initial losses, parameters per rank: see ``LawPoints.planning_reference``)."""
        return {
            "law": "delta_loss = C * x**alpha * length**(-beta) + b",
            "x": self.x_name_,
            "C": self.C_, "alpha": self.alpha_, "beta": self.beta_, "b": self.b_,
            "ci95": self.ci_, "r2": self.r2_, "rmse": self.rmse_,
            "n_points": self.n_points_, "n_excluded": self.n_excluded_,
            "grid": self.grid_,
            "fit": {
                "form": self.form, "loss": self.loss, "huber_scale": self.huber_scale,
                "saturation_loss": self.saturation_loss, "bootstrap": self.bootstrap, "seed": self.seed,
            },
            "provenance": self.provenance_,
            "reference": self.reference_,
            "bootstrap_draws": self.draws_.tolist(),
            "valid_for": "the training budget, placement, data and method in provenance only: ΔL at a fixed "
            "budget mixes capacity with optimisation",
        }  # fmt: skip

    @classmethod
    def from_dict(cls, values: dict) -> MemoryLaw:
        law = cls(
            **{k: values["fit"][k] for k in ("form", "loss", "huber_scale", "saturation_loss", "bootstrap", "seed")},
            x_name=values["x"],
        )
        law.C_, law.alpha_, law.beta_, law.b_ = (float(values[k]) for k in ("C", "alpha", "beta", "b"))
        law.ci_ = {k: tuple(v) for k, v in values["ci95"].items()}
        law.r2_, law.rmse_, law.n_points_ = values["r2"], values["rmse"], values["n_points"]
        law.n_excluded_ = values["n_excluded"]
        law.grid_ = values["grid"]
        law.provenance_ = values["provenance"]
        law.reference_ = values.get("reference", {})
        law.draws_ = np.array(values.get("bootstrap_draws", []), dtype=np.float64).reshape(-1, 4)
        return law
