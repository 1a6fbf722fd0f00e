"""Sweeps: grids of probes, run resumably into an embedded SQLite results store.

Reading a store (``ResultsStore``) is plain SQLite; running a sweep loads torch on first use.
"""

from typing import TYPE_CHECKING

from memlaw._lazy import lazy_exports
from memlaw.sweep.grid import SweepConfig, load_sweep
from memlaw.sweep.store import ResultsStore, cell_key

if TYPE_CHECKING:
    from memlaw.sweep.runner import run_sweep

__getattr__, __dir__ = lazy_exports(__name__, {"run_sweep": "memlaw.sweep.runner"})
__all__ = ["ResultsStore", "SweepConfig", "cell_key", "load_sweep", "run_sweep"]
