"""memlaw: measure, predict and maximise how much a LoRA adapter memorises verbatim."""

from memlaw._version import __version__
from memlaw.errors import MemlawInputError
from memlaw.law import MemoryLaw
from memlaw.probe import ProbeConfig, ProbeResult, run_probe, run_probes

__all__ = ["MemlawInputError", "MemoryLaw", "ProbeConfig", "ProbeResult", "__version__", "run_probe", "run_probes"]
