"""Fitting a law form (ΔL = C·x^α·ℓ^(−β) + b by default; x = rank, or trainable parameters).

For fixed (α, β) the law is linear in C and b, so the form starts from a grid over (α, β)
with those in closed form, and ``scipy.optimize.least_squares`` refines every constant together
(optionally with a Huber loss). Bootstrap intervals refit resampled points from the point
estimate, which keeps 1000 resamples to seconds.

``MemoryLaw`` follows scikit-learn's estimator contract: ``__init__`` only stores its
hyper-parameters, ``fit`` validates them and sets the learned attributes (trailing ``_``), and
``clone`` builds an unfitted copy from ``get_params``.
"""

from __future__ import annotations

import inspect

import numpy as np
from scipy.optimize import least_squares

from memlaw.constants import CERTIFY_LOSS
from memlaw.errors import MemlawInputError
from memlaw.law.forms import FORMS, PowerLaw
from memlaw.law.points import LawPoints

LOSSES = ("squares", "huber")
#: What x can be: the adapter's rank, or its trainable-parameter count.
XS = ("rank", "params")


class MemoryLaw:
    """``MemoryLaw(form=..., loss=...).fit(x, length, delta_loss, final_loss)`` then ``law.predict``.

    Points whose final loss is below ``saturation_loss`` (default ln 2: every token is then
    likely certified, so ΔL is capped by L_init rather than by capacity) are excluded from the
    fit and listed in ``excluded_``. Learned constants are ``params_`` (in the form's order),
    ``constants_`` (by name) and one attribute each (``C_``, ``alpha_``, ``beta_``, ``b_``).
    """

    def __init__(
        self,
        *,
        form: str = "full",
        x: str = "rank",
        loss: str = "squares",
        huber_scale: float = 0.1,
        saturation_loss: float = CERTIFY_LOSS,
        bootstrap: int = 1000,
        seed: int = 0,
    ):
        self.form, self.x, self.loss, self.huber_scale = form, x, loss, huber_scale
        self.saturation_loss, self.bootstrap, self.seed = saturation_loss, bootstrap, seed

    # -- the estimator contract -------------------------------------------------------------
    def get_params(self) -> dict:
        return {
            name: getattr(self, name) for name in inspect.signature(type(self).__init__).parameters if name != "self"
        }

    def clone(self, **changes) -> MemoryLaw:
        """An unfitted law with the same hyper-parameters, except ``changes``."""
        return type(self)(**{**self.get_params(), **changes})

    def _validate(self) -> PowerLaw:
        if self.form not in FORMS:
            raise MemlawInputError(f"unknown law form '{self.form}': use {' or '.join(FORMS)}")
        if self.loss not in LOSSES:
            raise MemlawInputError(f"unknown fit loss '{self.loss}': use {' or '.join(LOSSES)}")
        if self.x not in XS:
            raise MemlawInputError(f"x must be {' or '.join(XS)}, got '{self.x}'")
        return FORMS[self.form]

    @property
    def form_(self) -> PowerLaw:
        return FORMS[self.form]

    # -- fitting -----------------------------------------------------------------------------
    def fit(self, x, length, delta_loss, final_loss=None) -> MemoryLaw:
        form = self._validate()
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
            keep = ~(np.asarray(final_loss, dtype=np.float64) < self.saturation_loss)
        self.excluded_ = np.flatnonzero(~keep)
        self.n_excluded_ = len(self.excluded_)
        needed = len(form.params)
        if keep.sum() == 0:
            raise MemlawInputError(
                f"all {len(delta)} points are saturated (final loss < {self.saturation_loss:.3f}): nothing to fit"
            )
        if keep.sum() < needed + 1:
            raise MemlawInputError(f"too few points to fit: {int(keep.sum())} unsaturated, need at least {needed + 1}")
        self.x_, self.length_, self.delta_ = x[keep], length[keep], delta[keep]
        self.grid_ = {"x": sorted(set(self.x_.tolist())), "length": sorted(set(self.length_.tolist()))}
        self._set_params(
            self._refine(self.x_, self.length_, self.delta_, form.start(self.x_, self.length_, self.delta_))
        )
        residual = self.delta_ - self.predict(self.x_, self.length_)
        total = np.sum((self.delta_ - self.delta_.mean()) ** 2)
        self.r2_ = float(1 - np.sum(residual**2) / total) if total > 0 else float("nan")
        self.rmse_ = float(np.sqrt(np.mean(residual**2)))
        self.n_points_ = int(keep.sum())
        self.ci_ = self._bootstrap()
        self.provenance_, self.reference_ = {}, {}
        return self

    def x_of(self, points: LawPoints) -> np.ndarray:
        """The points' x for this law: their ranks, or their trainable-parameter counts."""
        if self.x == "rank":
            return points.rank
        if points.params is None:
            raise MemlawInputError("these points have no trainable-parameter counts: fit in rank")
        return points.params

    def fit_points(self, points: LawPoints) -> MemoryLaw:
        """Fit to measured points, keeping their provenance and what planning needs."""
        self._validate()
        self.fit(self.x_of(points), points.length, points.delta_loss, points.final_loss)
        self.provenance_, self.reference_ = points.provenance, points.planning_reference()
        return self

    def _set_params(self, params: np.ndarray) -> None:
        self.params_ = np.asarray(params, dtype=np.float64)
        self.constants_ = {name: float(v) for name, v in zip(self.form_.params, self.params_, strict=True)}
        for name, value in self.constants_.items():
            setattr(self, f"{name}_", value)

    def _refine(self, x: np.ndarray, length: np.ndarray, delta: np.ndarray, start: np.ndarray) -> np.ndarray:
        form = self.form_
        solution = least_squares(
            lambda p: form.curve(p, x, length) - delta, start,
            loss="huber" if self.loss == "huber" else "linear", f_scale=self.huber_scale, method="trf",
        )  # fmt: skip
        return solution.x

    def _bootstrap(self) -> dict[str, tuple[float, float]]:
        """95 % percentile intervals from refits of resampled points, started at the point estimate."""
        self.draws_ = np.empty((0, len(self.form_.params)))
        if self.bootstrap <= 0:
            return {}
        rng = np.random.default_rng(self.seed)
        n = len(self.delta_)
        draws = []
        for _ in range(self.bootstrap):
            pick = rng.integers(0, n, n)
            draws.append(self._refine(self.x_[pick], self.length_[pick], self.delta_[pick], self.params_))
        self.draws_ = np.array(draws)
        low, high = np.percentile(self.draws_, [2.5, 97.5], axis=0)
        return {name: (float(lo), float(hi)) for name, lo, hi in zip(self.form_.params, low, high, strict=True)}

    # -- using the law -----------------------------------------------------------------------
    def formula(self, *, fitted: bool = False) -> str:
        """The fitted form as text (``fitted``: with its constants filled in)."""
        return self.form_.formula("P" if self.x == "params" else "r", self.constants_ if fitted else None)

    def predict(self, x, length) -> np.ndarray:
        return self.form_.curve(self.params_, x, length)

    def rank_for(self, length: float, initial_loss: float, target_loss: float = CERTIFY_LOSS) -> float:
        """Smallest x whose predicted final loss L_init − ΔL reaches ``target_loss``."""
        return self.form_.x_for(self.params_, length, initial_loss - target_loss)

    def length_for(self, x: float, initial_loss: float, target_loss: float = CERTIFY_LOSS) -> float:
        """Longest ℓ whose predicted final loss at this x still reaches ``target_loss``."""
        return self.form_.length_at(self.params_, x, initial_loss - target_loss)

    # -- persistence ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-ready law with its provenance and what planning needs besides the constants
        (measured initial losses, parameters per rank: see ``LawPoints.planning_reference``)."""
        return {
            "law": self.formula(),
            "x": self.x,
            **self.constants_,
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
        law = cls(**values["fit"], x=values["x"])
        form = law._validate()
        law._set_params(np.array([float(values[name]) for name in form.params]))
        law.ci_ = {k: tuple(v) for k, v in values["ci95"].items()}
        law.r2_, law.rmse_, law.n_points_ = values["r2"], values["rmse"], values["n_points"]
        law.n_excluded_ = values["n_excluded"]
        law.grid_ = values["grid"]
        law.provenance_ = values["provenance"]
        law.reference_ = values.get("reference", {})
        draws = np.array(values.get("bootstrap_draws", []), dtype=np.float64)
        # laws saved before forms were objects kept a zero b column for every form
        law.draws_ = (
            draws.reshape(len(draws), -1)[:, : len(form.params)] if draws.size else np.empty((0, len(form.params)))
        )
        return law
