"""memlaw: measure, predict and maximise how much a LoRA adapter memorises verbatim."""

from typing import TYPE_CHECKING

from memlaw._lazy import lazy_exports
from memlaw._version import __version__
from memlaw.errors import MemlawInputError

if TYPE_CHECKING:
    from memlaw.law import MemoryLaw
    from memlaw.probe import ProbeConfig, ProbeResult, run_probe, run_probes

_PROBE = ("ProbeConfig", "ProbeResult", "run_probe", "run_probes")  # memlaw.probe resolves them lazily in turn
__getattr__, __dir__ = lazy_exports(__name__, {"MemoryLaw": "memlaw.law", **dict.fromkeys(_PROBE, "memlaw.probe")})
__all__ = [
    "MemlawInputError",
    "MemoryLaw",
    "ProbeConfig",
    "ProbeResult",
    "__version__",
    "run_probe",
    "run_probes",
]
