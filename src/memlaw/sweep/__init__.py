"""Sweeps: grids of probes, run resumably into an embedded SQLite results store."""

from memlaw.sweep.grid import SweepConfig, load_sweep
from memlaw.sweep.runner import run_sweep
from memlaw.sweep.store import ResultsStore, cell_key

__all__ = ["ResultsStore", "SweepConfig", "cell_key", "load_sweep", "run_sweep"]
