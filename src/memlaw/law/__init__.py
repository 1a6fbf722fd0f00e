"""The Parametric Memory Law: fit ΔL = C·r^α·ℓ^(−β) + b, predict, and plan capacity."""

from memlaw.law.fit import MemoryLaw

__all__ = ["MemoryLaw"]
