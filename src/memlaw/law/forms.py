"""Forms of the memory law: each one object owning its formula, curve, inverses and parameters.

A form maps (x, ℓ) to ΔL, x being the rank or the trainable-parameter count (the law's
choice), and a covariate form also takes u, what the base model already knows of the
content: the mean initial loss per answer token, or its excess above the target ln 2.
Fitting, planning, comparing, the summary and the figures all go through the form, so adding
one is one class here plus its entry in ``FORMS``.
"""

from __future__ import annotations

import math

import numpy as np

from memlaw.constants import CERTIFY_LOSS

#: Exponent grid searched before refinement.
EXPONENT_GRID = np.linspace(0.02, 3.0, 60)
#: Covariate exponents searched before refinement (with every third exponent above).
COVARIATE_GRID = np.linspace(-1.0, 2.0, 13)
#: Smallest excess u (nats): content the base model already knows to below ln 2.
MIN_EXCESS = 0.01 * math.log(2)


class PowerLaw:
    """ΔL = C·x^α·ℓ^(−β) + b, the paper's law."""

    name = "full"
    description = "with offset b"
    params: tuple[str, ...] = ("C", "alpha", "beta", "b")
    #: What u the form takes from a mean initial loss per token (None: no covariate).
    covariate: str | None = None

    def _offset(self, p) -> float:
        return p[-1]

    def _scale(self, p, u) -> float | np.ndarray:
        """C, times the covariate's factor in forms that have one."""
        return p[0]

    def u_of(self, initial_loss):
        """The covariate u of content at this mean initial loss per token (None without one)."""
        return None

    def formula(self, x_symbol: str = "r", values: dict[str, float] | None = None) -> str:
        """The law as text: symbolic, or with the fitted ``values`` filled in."""
        show = (lambda name, symbol: format(values[name], ".4g")) if values else (lambda name, symbol: symbol)
        text = f"ΔL = {show('C', 'C')} · {x_symbol}^{show('alpha', 'α')} · ℓ^(−{show('beta', 'β')})"
        if "b" in self.params:
            text += (f" {'+' if values['b'] >= 0 else '−'} {abs(values['b']):.4g}") if values else " + b"
        return text

    def curve(self, p, x, length, u=None) -> np.ndarray:
        """ΔL at x (rank or parameters), ℓ (and u) for the constants ``p`` (in ``params`` order)."""
        alpha, beta = p[1:3]
        x, length = np.asarray(x, dtype=np.float64), np.asarray(length, dtype=np.float64)
        return self._scale(p, u) * x**alpha * length ** (-beta) + self._offset(p)

    def x_for(self, p, length: float, need: float, u: float | None = None) -> float:
        """The x at which ΔL equals ``need`` at this ℓ (0 when the offset alone gives it)."""
        alpha, beta = p[1:3]
        if need - self._offset(p) <= 0:
            return 0.0
        return float(((need - self._offset(p)) * length**beta / self._scale(p, u)) ** (1 / alpha))

    def length_at(self, p, x: float, need: float, u: float | None = None) -> float:
        """The ℓ at which ΔL at this x falls to ``need`` (inf when it never does)."""
        alpha, beta = p[1:3]
        if need - self._offset(p) <= 0:
            return float("inf")
        return float((self._scale(p, u) * x**alpha / (need - self._offset(p))) ** (1 / beta))

    def design(self, feature: np.ndarray) -> np.ndarray:
        """Columns of the linear part for fixed exponents: C's feature, and b's constant."""
        return np.column_stack([feature, np.ones_like(feature)])

    def exponent_grid(self):
        """(α, β, further exponents) tried by ``start``."""
        return ((alpha, beta, ()) for alpha in EXPONENT_GRID for beta in EXPONENT_GRID)

    def start(self, x: np.ndarray, length: np.ndarray, delta: np.ndarray, u: np.ndarray | None = None) -> np.ndarray:
        """Constants minimising the squared error over the exponent grid; for fixed exponents the
        law is linear in C (and b), which come in closed form."""
        best, best_sse = None, np.inf
        log_x, log_l = np.log(x), np.log(length)
        log_u = None if u is None else np.log(u)
        for alpha, beta, more in self.exponent_grid():
            exponent = alpha * log_x - beta * log_l
            for power in more:
                exponent = exponent + power * log_u
            design = self.design(np.exp(exponent))
            coef, *_ = np.linalg.lstsq(design, delta, rcond=None)
            sse = float(np.sum((design @ coef - delta) ** 2))
            if sse < best_sse:
                best, best_sse = np.array([coef[0], alpha, beta, *more, *coef[1:]]), sse
        assert best is not None
        return best


class PowerLawNoOffset(PowerLaw):
    """ΔL = C·x^α·ℓ^(−β): the paper's law without its offset."""

    name = "no_offset"
    description = "no offset"
    params = ("C", "alpha", "beta")

    def _offset(self, p) -> float:
        return 0.0

    def design(self, feature: np.ndarray) -> np.ndarray:
        return feature[:, None]


class CovariatePowerLaw(PowerLaw):
    """ΔL = C·x^α·ℓ^(−β)·u^γ + b, u being the content's mean initial loss per token.

    γ = 0 is the paper's law (ΔL does not depend on the content); γ = 1 with b = 0 makes the
    adapter remove a share of the initial loss; γ = 1 − β makes it hold a fixed amount of
    information, ℓ·u nats, whatever the content. Fitting γ on content at several initial
    losses lets the data choose."""

    name = "initial"
    description = "covariate u = initial loss"
    params = ("C", "alpha", "beta", "gamma", "b")
    covariate = "initial loss"

    def _scale(self, p, u):
        if u is None:
            raise ValueError(f"the '{self.name}' form needs the content's initial loss")
        with np.errstate(over="ignore"):  # an overflow reads as inf, which the plan refuses
            return p[0] * np.asarray(u, dtype=np.float64) ** p[3]

    def u_of(self, initial_loss):
        return None if initial_loss is None else np.asarray(initial_loss, dtype=np.float64)

    def formula(self, x_symbol: str = "r", values: dict[str, float] | None = None) -> str:
        text = super().formula(x_symbol, values)
        gamma = format(values["gamma"], ".4g") if values else "γ"
        head, sep, tail = text.partition(")")  # after ℓ^(−β)
        return f"{head}{sep} · u^{gamma}{tail}"

    def exponent_grid(self):
        coarse = EXPONENT_GRID[::3]
        return ((alpha, beta, (gamma,)) for alpha in coarse for beta in coarse for gamma in COVARIATE_GRID)


class ExcessCovariatePowerLaw(CovariatePowerLaw):
    """The covariate law with u = initial loss − ln 2: the excess the adapter must remove."""

    name = "excess"
    description = "covariate u = initial loss − ln 2"
    covariate = "initial loss above ln 2"

    def u_of(self, initial_loss):
        if initial_loss is None:
            return None
        # content already below the target needs nothing; keep u positive for the power
        return np.maximum(np.asarray(initial_loss, dtype=np.float64) - CERTIFY_LOSS, MIN_EXCESS)


FORMS: dict[str, PowerLaw] = {
    form.name: form for form in (PowerLaw(), PowerLawNoOffset(), CovariatePowerLaw(), ExcessCovariatePowerLaw())
}
