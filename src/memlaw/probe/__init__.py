"""A probe: write content into one adapter and measure exactly what it remembers.

Its ``ProbeResult`` carries every quantity the memory law and the p > 0.5 phase transition
need; ``ProbeResult.to_dict`` is the documented JSON schema (docs/probe-result.md).
"""

from memlaw.probe.config import GENERATORS, ProbeConfig
from memlaw.probe.data import build_data, check_fits
from memlaw.probe.result import ProbeResult
from memlaw.probe.run import default_max_copies, run_probe, run_probes, stack_groups

__all__ = [
    "GENERATORS",
    "ProbeConfig",
    "ProbeResult",
    "build_data",
    "check_fits",
    "default_max_copies",
    "run_probe",
    "run_probes",
    "stack_groups",
]
