"""The Parametric Memory Law: fit ΔL = C·r^α·ℓ^(−β) + b, predict, and plan capacity."""

from memlaw.law.fit import MemoryLaw
from memlaw.law.plan import LawPlan, content_warning, plan_items, plan_length, plan_rank
from memlaw.law.points import LawPoints, load_points

__all__ = [
    "LawPoints",
    "MemoryLaw",
    "LawPlan",
    "content_warning",
    "load_points",
    "plan_items",
    "plan_length",
    "plan_rank",
]
