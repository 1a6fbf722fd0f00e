"""memlaw: measure, predict and maximise how much a LoRA adapter memorises verbatim.

import memlaw
plan = memlaw.plan(data="facts.jsonl")      # the rank that holds the file, with its interval
result = memlaw.train("facts.jsonl", out="adapter", rank=plan.rank)
result.certified                            # every answer token at p > 0.5
"""

from typing import TYPE_CHECKING

from memlaw._lazy import lazy_exports
from memlaw._version import __version__
from memlaw.errors import MemlawInputError

if TYPE_CHECKING:
    from memlaw.api import Plan, Room, calibrate, load_law, plan, room, train
    from memlaw.law import MemoryLaw
    from memlaw.probe import ProbeConfig, ProbeResult, run_probe, run_probes

_API = ("Plan", "Room", "calibrate", "load_law", "plan", "room", "train")
_PROBE = ("ProbeConfig", "ProbeResult", "run_probe", "run_probes")  # memlaw.probe resolves them lazily in turn
__getattr__, __dir__ = lazy_exports(
    __name__, {"MemoryLaw": "memlaw.law", **dict.fromkeys(_API, "memlaw.api"), **dict.fromkeys(_PROBE, "memlaw.probe")}
)
__all__ = [
    "MemlawInputError",
    "MemoryLaw",
    "Plan",
    "ProbeConfig",
    "ProbeResult",
    "Room",
    "__version__",
    "calibrate",
    "load_law",
    "plan",
    "room",
    "run_probe",
    "run_probes",
    "train",
]
