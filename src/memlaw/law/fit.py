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

from memlaw.constants import CERTIFY_LOSS
from memlaw.errors import MemlawInputError
from memlaw.io import whole
from memlaw.law.certify import fit_certification
from memlaw.law.cost import fit_cost
from memlaw.law.forms import FORMS, PowerLaw
from memlaw.law.points import LawPoints
from memlaw.law.state import Provenance, Reference

LOSSES = ("squares", "huber")
#: Which cells count as saturated (their ΔL is capped by the data, not by capacity): the
#: certified ones, or those whose mean final loss is below ``saturation_loss``.
SATURATION_RULES = ("certified", "loss")
#: Fewer fitted points than this, per constant of the form, and the fit gets a warning.
POINTS_PER_CONSTANT = 2
#: α and β both below this: the power law cannot be told from its logarithmic limit.
LOG_LIMIT = 0.05
#: What x can be: the adapter's rank, or its trainable-parameter count.
XS = ("rank", "params")


class MemoryLaw:
    """``MemoryLaw(form=..., loss=...).fit(x, length, delta_loss, final_loss)`` then ``law.predict``.

    Two kinds of points are excluded from the fit and listed in ``excluded_`` (counted by
    reason in ``excluded_counts_``):

    - saturated ones, whose ΔL is capped by the data rather than by capacity. By default
      (``saturation="loss"``) the cells whose mean final loss is below ``saturation_loss``
      (ln 2); ``saturation="certified"`` excludes the certified cells only and keeps the
      uncertified ones below ln 2, which lie nearest the boundary plans look for. On the demo's
      60-epoch cells the loss rule predicts held-out cells better (RMSE 0.78 against 1.27
      nats); on converged cells the two have not been compared yet (docs/convergence.md). The
      loss rule is what applies when the points do not record certification;
    - budget-limited ones, whose training ended with the loss still falling: their ΔL
      measures the budget, not capacity (``keep_budget_limited=True`` keeps them).

    Learned constants are ``params_`` (in the form's order), ``constants_`` (by name) and one
    attribute each (``C_``, ``alpha_``, ``beta_``, ``b_``); ``warnings_`` says what to doubt.
    """

    def __init__(
        self,
        *,
        form: str = "full",
        x: str = "rank",
        loss: str = "squares",
        huber_scale: float = 0.1,
        saturation: str = "loss",
        saturation_loss: float = CERTIFY_LOSS,
        keep_budget_limited: bool = False,
        bootstrap: int = 1000,
        seed: int = 0,
    ):
        self.form, self.x, self.loss, self.huber_scale = form, x, loss, huber_scale
        self.saturation, self.saturation_loss = saturation, saturation_loss
        self.keep_budget_limited = keep_budget_limited
        self.bootstrap, self.seed = bootstrap, seed

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
        if self.saturation not in SATURATION_RULES:
            raise MemlawInputError(f"saturation must be {' or '.join(SATURATION_RULES)}, got '{self.saturation}'")
        return FORMS[self.form]

    @property
    def form_(self) -> PowerLaw:
        return FORMS[self.form]

    # -- fitting -----------------------------------------------------------------------------
    def fit(
        self, x, length, delta_loss, final_loss=None, *, initial_loss=None, certified=None, budget_limited=None
    ) -> MemoryLaw:
        """Fit to points; a covariate form also needs each point's mean ``initial_loss``."""
        form = self._validate()
        x, length, delta = (np.asarray(v, dtype=np.float64) for v in (x, length, delta_loss))
        if not (x.shape == length.shape == delta.shape) or x.ndim != 1:
            raise MemlawInputError("rank, length and delta_loss must be equal-length lists")
        start = np.full_like(delta, np.nan) if initial_loss is None else np.asarray(initial_loss, dtype=np.float64)
        checked = [("rank", x), ("length", length), ("delta_loss", delta)]
        if form.covariate is not None:
            if initial_loss is None:
                raise MemlawInputError(
                    f"the '{form.name}' form needs the points' initial losses (an initial_loss column)"
                )
            checked.append(("initial_loss", start))
        for name, values in checked:
            if values.shape != delta.shape or not np.all(np.isfinite(values)):
                raise MemlawInputError(f"{name} holds NaN or infinite values")
        if np.any(x <= 0) or np.any(length <= 0):
            raise MemlawInputError("ranks and lengths must be positive")
        saturated, limited, self.saturation_applied_ = self._exclusions(
            len(delta), final_loss, certified, budget_limited
        )
        keep = ~saturated & ~limited
        self.excluded_ = np.flatnonzero(~keep)
        self.n_excluded_ = len(self.excluded_)
        self.excluded_counts_ = {"saturated": int(saturated.sum()), "budget_limited": int((limited & ~saturated).sum())}
        needed = len(form.params)
        if keep.sum() == 0:
            raise MemlawInputError(f"no point left to fit: {self.excluded_words()}")
        if keep.sum() < needed + 1:
            raise MemlawInputError(
                f"too few points to fit: {int(keep.sum())} left, need at least {needed + 1} ({self.excluded_words()})"
            )
        self.warnings_ = self._warnings(keep, needed, budget_limited)
        self.x_, self.length_, self.delta_, self.initial_loss_ = x[keep], length[keep], delta[keep], start[keep]
        self.u_ = form.u_of(self.initial_loss_)
        self.grid_ = {
            "x": sorted(whole(x) for x in set(self.x_.tolist())),
            "length": sorted(whole(n) for n in set(self.length_.tolist())),
        }
        if form.covariate is not None:
            self.grid_["initial_loss"] = [float(self.initial_loss_.min()), float(self.initial_loss_.max())]
        self._set_params(
            self._refine(
                self.x_, self.length_, self.u_, self.delta_, form.start(self.x_, self.length_, self.delta_, self.u_)
            )
        )
        residual = self.delta_ - self.predict(self.x_, self.length_, self.initial_loss_)
        total = np.sum((self.delta_ - self.delta_.mean()) ** 2)
        if not total > 0:
            raise MemlawInputError(
                f"all {len(self.delta_)} points fitted have the same ΔL: the law's constants cannot be identified"
            )
        unusable = unusable_constants(self.constants_)
        if unusable:
            raise MemlawInputError(f"the fit cannot identify a memory law from these points: {unusable}; nothing saved")
        self.r2_ = float(1 - np.sum(residual**2) / total)
        self.rmse_ = float(np.sqrt(np.mean(residual**2)))
        self.n_points_ = int(keep.sum())
        self.ci_ = self._bootstrap()
        self.warnings_ += self._log_limit()
        # fitted from arrays: nothing known of where they came from (``fit_points`` fills these)
        self.provenance_, self.reference_, self.cost_, self.certification_ = Provenance(), Reference(), None, None
        return self

    def log_limit_rates(self) -> dict[str, tuple[float, float | None, float | None]] | None:
        """At the logarithmic limit (α and β both below ``LOG_LIMIT``), the identified rates
        C·α, C·β and α/β as (value, 95 % low, high); None elsewhere.

        As α, β → 0 with C growing, C·r^α·ℓ^(−β) + b → (C + b) + C·α·ln r − C·β·ln ℓ: only
        these three are identified there, and C and b trade off freely."""
        if not (self.alpha_ < LOG_LIMIT and self.beta_ < LOG_LIMIT):
            return None
        names = self.form_.params

        def rates(params: np.ndarray) -> np.ndarray:
            c = dict(zip(names, params, strict=True))
            return np.array([c["C"] * c["alpha"], c["C"] * c["beta"], c["alpha"] / c["beta"]])

        central = rates(self.params_)
        low = high = [None] * 3
        if len(self.draws_):
            low, high = np.percentile([rates(d) for d in self.draws_], [2.5, 97.5], axis=0).tolist()
        return {name: (float(central[i]), low[i], high[i]) for i, name in enumerate(("C·α", "C·β", "α/β"))}

    def _log_limit(self) -> list[str]:
        rates = self.log_limit_rates()
        if rates is None:
            return []
        return [
            f"α and β are both below {LOG_LIMIT}: the power law sits at its logarithmic limit, "
            "ΔL ≈ const + C·α·ln r − C·β·ln ℓ, where C and b are not separately identified (nor are their "
            f"intervals meaningful). Identified: {describe_rates(rates)} (95% bootstrap intervals; "
            "nats per e-fold of r and of ℓ; at a fixed ΔL, ℓ grows as r^(α/β))"
        ]

    def _exclusions(self, n: int, final_loss, certified, budget_limited) -> tuple[np.ndarray, np.ndarray, str]:
        """(saturated, budget-limited) masks under this law's rules, and the saturation rule that applied."""
        by_certified = self.saturation == "certified" and certified is not None
        if by_certified:
            saturated = np.asarray(certified, dtype=np.float64) == 1
        elif final_loss is not None:
            saturated = np.asarray(final_loss, dtype=np.float64) < self.saturation_loss
        else:
            saturated = np.zeros(n, dtype=bool)
        limited = np.zeros(n, dtype=bool)
        if budget_limited is not None and not self.keep_budget_limited:
            limited = np.asarray(budget_limited, dtype=np.float64) == 1
        return saturated, limited, "certified" if by_certified else "loss"

    def excluded_words(self) -> str:
        rule = "certified" if self.saturation_applied_ == "certified" else f"final loss < {self.saturation_loss:.3f}"
        words = f"{self.excluded_counts_['saturated']} excluded as saturated ({rule})"
        if self.excluded_counts_["budget_limited"]:
            words += (
                f", {self.excluded_counts_['budget_limited']} as budget-limited (the loss was still falling when "
                "training stopped: train them --until converged, or fit with --keep-budget-limited)"
            )
        return words

    def _warnings(self, keep: np.ndarray, constants: int, budget_limited) -> list[str]:
        warnings, kept = [], int(keep.sum())
        if kept < POINTS_PER_CONSTANT * constants:
            warnings.append(
                f"only {kept} points fitted for {constants} constants: too few to trust the constants "
                "or their intervals"
            )
        unknown = 0 if budget_limited is None else int(np.isnan(np.asarray(budget_limited, dtype=np.float64)).sum())
        if unknown:
            warnings.append(
                f"{unknown} points do not record whether their loss had converged (stored before memlaw recorded "
                "stop reasons): they were fitted as if it had"
            )
        limited_kept = 0 if budget_limited is None else int((np.asarray(budget_limited) == 1)[keep].sum())
        if self.keep_budget_limited and limited_kept:
            warnings.append(
                f"{limited_kept} of the {kept} points fitted are budget-limited: this law describes the training "
                "budget, not capacity"
            )
        return warnings

    def usable(self, points: LawPoints) -> np.ndarray:
        """The points this law's rules would fit (neither saturated nor budget-limited)."""
        saturated, limited, _ = self._exclusions(
            len(points.rank), points.final_loss, points.certified, points.budget_limited
        )
        return ~saturated & ~limited

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
        self.fit(
            self.x_of(points), points.length, points.delta_loss, points.final_loss, initial_loss=points.initial_loss,
            certified=points.certified, budget_limited=points.budget_limited,
        )  # fmt: skip
        self.provenance_, self.reference_ = Provenance(dict(points.provenance)), points.planning_reference()
        self.cost_ = fit_cost(points.subset(_stopped_on_their_own(points)))
        if points.initial_loss is not None and points.certified is not None:
            # every cell, saturated ones too: they are where certification happens
            predicted = points.initial_loss - self.predict(self.x_of(points), points.length, points.initial_loss)
            self.certification_ = fit_certification(points.initial_loss, predicted, points.certified)
        return self

    def _set_params(self, params: np.ndarray) -> None:
        self.params_ = np.asarray(params, dtype=np.float64)
        self.constants_ = {name: float(v) for name, v in zip(self.form_.params, self.params_, strict=True)}
        for name, value in self.constants_.items():
            setattr(self, f"{name}_", value)

    def _refine(self, x, length, u, delta, start: np.ndarray) -> np.ndarray:
        from scipy.optimize import least_squares  # here: plan and ask only read a law, and it costs 0.3 s

        form = self.form_
        solution = least_squares(
            lambda p: form.curve(p, x, length, u) - delta, start,
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
        # a resample can push the optimizer to huge C (the logarithmic limit): overflowing trial
        # steps are rejected by the optimizer, so their floating-point warnings are noise
        with np.errstate(over="ignore", invalid="ignore"):
            for _ in range(self.bootstrap):
                pick = rng.integers(0, n, n)
                u = None if self.u_ is None else self.u_[pick]
                draws.append(self._refine(self.x_[pick], self.length_[pick], u, self.delta_[pick], self.params_))
        self.draws_ = np.array(draws)
        low, high = np.percentile(self.draws_, [2.5, 97.5], axis=0)
        return {name: (float(lo), float(hi)) for name, lo, hi in zip(self.form_.params, low, high, strict=True)}

    # -- using the law -----------------------------------------------------------------------
    def formula(self, *, fitted: bool = False) -> str:
        """The fitted form as text (``fitted``: with its constants filled in)."""
        return self.form_.formula("P" if self.x == "params" else "r", self.constants_ if fitted else None)

    def predict(self, x, length, initial_loss=None) -> np.ndarray:
        """ΔL at x and ℓ (for content at this mean ``initial_loss``: covariate forms need it)."""
        return self.form_.curve(self.params_, x, length, self.form_.u_of(initial_loss))

    def rank_for(self, length: float, initial_loss: float, target_loss: float = CERTIFY_LOSS) -> float:
        """Smallest x whose predicted final loss L_init − ΔL reaches ``target_loss``."""
        return self.form_.x_for(self.params_, length, initial_loss - target_loss, self.form_.u_of(initial_loss))

    def length_for(self, x: float, initial_loss: float, target_loss: float = CERTIFY_LOSS) -> float:
        """Longest ℓ whose predicted final loss at this x still reaches ``target_loss``."""
        return self.form_.length_at(self.params_, x, initial_loss - target_loss, self.form_.u_of(initial_loss))

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
            "excluded": self.excluded_counts_, "saturation_applied": self.saturation_applied_,
            "warnings": self.warnings_,
            "grid": self.grid_,
            "fit": {
                "form": self.form, "loss": self.loss, "huber_scale": self.huber_scale, "saturation": self.saturation,
                "saturation_loss": self.saturation_loss, "keep_budget_limited": self.keep_budget_limited,
                "bootstrap": self.bootstrap, "seed": self.seed,
            },
            "cost": self.cost_,
            "certification": self.certification_,
            "provenance": self.provenance_.to_dict(),
            "reference": self.reference_.to_dict(),
            "bootstrap_draws": self.draws_.tolist(),
            "valid_for": "the placement, data, method and stopping rule in provenance only",
        }  # fmt: skip

    @classmethod
    def from_dict(cls, values: dict) -> MemoryLaw:
        # laws saved before the certified saturation rule excluded by final loss
        law = cls(**{"saturation": "loss", **values["fit"]}, x=values["x"])
        form = law._validate()
        for name in form.params:
            if isinstance(values[name], bool) or not isinstance(values[name], (int, float)):
                raise TypeError(f"constant {name} is {values[name]!r}, not a number")
        law._set_params(np.array([float(values[name]) for name in form.params]))
        unusable = unusable_constants(law.constants_)
        if unusable:
            raise ValueError(unusable)
        law.ci_ = {k: tuple(v) for k, v in values["ci95"].items()}
        law.r2_, law.rmse_, law.n_points_ = values["r2"], values["rmse"], values["n_points"]
        law.n_excluded_ = values["n_excluded"]
        law.excluded_counts_ = values.get("excluded", {"saturated": law.n_excluded_, "budget_limited": 0})
        law.saturation_applied_ = values.get("saturation_applied", "loss")
        law.warnings_ = values.get("warnings", [])
        law.cost_ = values.get("cost")
        law.certification_ = values.get("certification")
        if law.certification_ is not None:
            for name in ("intercept", "slope"):
                value = law.certification_[name]
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
                    raise TypeError(f"certification {name} is {value!r}, not a finite number")
        if not isinstance(values["grid"], dict):
            raise TypeError(f"grid is {values['grid']!r}, not a mapping")
        law.grid_ = values["grid"]
        law.provenance_ = Provenance.from_dict(values["provenance"])
        law.reference_ = Reference.from_dict(values.get("reference") or {})
        draws = np.array(values.get("bootstrap_draws", []), dtype=np.float64)
        # laws saved before forms were objects kept a zero b column for every form
        law.draws_ = (
            draws.reshape(len(draws), -1)[:, : len(form.params)] if draws.size else np.empty((0, len(form.params)))
        )
        return law


def _stopped_on_their_own(points: LawPoints) -> np.ndarray:
    """Cells that ended at certification or convergence: their steps say what training costs."""
    if points.stop_reason is None:
        return np.zeros(len(points.rank), dtype=bool)
    return np.isin(points.stop_reason, ("certified", "converged"))


def unusable_constants(constants: dict[str, float]) -> str | None:
    """Why constants make no memory law (None when they do): non-finite, or ΔL not growing with x."""
    bad = [name for name, value in constants.items() if not np.isfinite(value)]
    if bad:
        return f"{', '.join(bad)} not finite"
    if not (constants["C"] > 0 and constants["alpha"] > 0):
        return f"C = {constants['C']:.3g} and α = {constants['alpha']:.3g}: ΔL would not grow with the adapter"
    return None


def describe_rates(rates: dict[str, tuple[float, float | None, float | None]]) -> str:
    """``name = value [low, high]`` for each rate of ``MemoryLaw.log_limit_rates``."""
    return ", ".join(
        f"{name} = {value:.3g}" + ("" if low is None else f" [{low:.3g}, {high:.3g}]")
        for name, (value, low, high) in rates.items()
    )
