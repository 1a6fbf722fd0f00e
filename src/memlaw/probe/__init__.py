"""A probe: write content into one adapter and measure exactly what it remembers.

Its ``ProbeResult`` carries every quantity the memory law and the p > 0.5 phase transition
need; ``ProbeResult.to_dict`` is the documented JSON schema (docs/probe-result.md).
``ProbeConfig`` imports no torch; the rest loads it on first use.
"""

from typing import TYPE_CHECKING

from memlaw._lazy import lazy_exports
from memlaw.probe.config import GENERATORS, ProbeConfig

if TYPE_CHECKING:
    from memlaw.probe.data import build_data, check_fits
    from memlaw.probe.result import ProbeResult
    from memlaw.probe.run import run_probe, run_probes, stack_groups, stack_size

_EXPORTS = {
    "build_data": "memlaw.probe.data",
    "check_fits": "memlaw.probe.data",
    "ProbeResult": "memlaw.probe.result",
    "stack_size": "memlaw.probe.run",
    "run_probe": "memlaw.probe.run",
    "run_probes": "memlaw.probe.run",
    "stack_groups": "memlaw.probe.run",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = [
    "GENERATORS",
    "ProbeConfig",
    "ProbeResult",
    "build_data",
    "check_fits",
    "stack_size",
    "run_probe",
    "run_probes",
    "stack_groups",
]
