"""Report folders: the fitted law, its figures, per-cell efficiency and a plan."""

from memlaw.report.build import write_report

__all__ = ["write_report"]
