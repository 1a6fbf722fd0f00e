"""Forms of the memory law: each one object owning its formula, curve, inverses and parameters.

A form maps (x, ℓ) to ΔL, x being the rank or the trainable-parameter count (the law's
choice). Fitting, planning, comparing, the summary and the figures all go through the form,
so adding one (say, a law with a covariate) is one class here plus its entry in ``FORMS``.
"""

from __future__ import annotations

import numpy as np

#: Exponent grid searched before refinement.
EXPONENT_GRID = np.linspace(0.02, 3.0, 60)


class PowerLaw:
    """ΔL = C·x^α·ℓ^(−β) + b, the paper's law."""

    name = "full"
    description = "with offset b"
    params: tuple[str, ...] = ("C", "alpha", "beta", "b")

    def _offset(self, p) -> float:
        return p[3]

    def formula(self, x_symbol: str = "r", values: dict[str, float] | None = None) -> str:
        """The law as text: symbolic, or with the fitted ``values`` filled in."""
        show = (lambda name, symbol: format(values[name], ".4g")) if values else (lambda name, symbol: symbol)
        text = f"ΔL = {show('C', 'C')} · {x_symbol}^{show('alpha', 'α')} · ℓ^(−{show('beta', 'β')})"
        if "b" in self.params:
            text += (f" {'+' if values['b'] >= 0 else '−'} {abs(values['b']):.4g}") if values else " + b"
        return text

    def curve(self, p, x, length) -> np.ndarray:
        """ΔL at x (rank or parameters) and ℓ for the constants ``p`` (in ``params`` order)."""
        c, alpha, beta = p[:3]
        x, length = np.asarray(x, dtype=np.float64), np.asarray(length, dtype=np.float64)
        return c * x**alpha * length ** (-beta) + self._offset(p)

    def x_for(self, p, length: float, need: float) -> float:
        """The x at which ΔL equals ``need`` at this ℓ (0 when the offset alone gives it)."""
        c, alpha, beta = p[:3]
        if need - self._offset(p) <= 0:
            return 0.0
        return float(((need - self._offset(p)) * length**beta / c) ** (1 / alpha))

    def length_at(self, p, x: float, need: float) -> float:
        """The ℓ at which ΔL at this x falls to ``need`` (inf when it never does)."""
        c, alpha, beta = p[:3]
        if need - self._offset(p) <= 0:
            return float("inf")
        return float((c * x**alpha / (need - self._offset(p))) ** (1 / beta))

    def design(self, feature: np.ndarray) -> np.ndarray:
        """Columns of the linear part for fixed exponents: C's feature, and b's constant."""
        return np.column_stack([feature, np.ones_like(feature)])

    def start(self, x: np.ndarray, length: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """Constants minimising the squared error over the exponent grid; for fixed (α, β) the
        law is linear in C (and b), which come in closed form."""
        best, best_sse = None, np.inf
        log_x, log_l = np.log(x), np.log(length)
        for alpha in EXPONENT_GRID:
            for beta in EXPONENT_GRID:
                feature = np.exp(alpha * log_x - beta * log_l)
                design = self.design(feature)
                coef, *_ = np.linalg.lstsq(design, delta, rcond=None)
                sse = float(np.sum((design @ coef - delta) ** 2))
                if sse < best_sse:
                    best, best_sse = np.array([coef[0], alpha, beta, *coef[1:]]), sse
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


FORMS: dict[str, PowerLaw] = {form.name: form for form in (PowerLaw(), PowerLawNoOffset())}
