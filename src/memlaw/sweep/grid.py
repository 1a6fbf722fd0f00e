"""Sweep configs: axes (lists or ranges of probe settings) crossed into probe cells.

```yaml
grid:                 # every combination of these
  rank: [1, 2, 4, 8]
  length: {start: 64, stop: 256, step: 64}     # 64, 128, 192, 256
  ratio: [1.0, 0.4]
fixed:                # the same in every cell
  data: longcontext
  epochs: 100
```

``grid`` may also be a list of such mappings: the sweep is then the union of their
combinations, in order (a cell listed twice runs once). That lets lengths follow the rank,
as a capacity sweep needs::

    grid:
      - {rank: [1], length: [64, 96, 128]}
      - {rank: [2], length: [128, 192, 256]}

Any probe setting can be an axis. Values are type-checked against ``ProbeConfig`` where the
config is read, so a bad sweep fails before any model is loaded.
"""

from __future__ import annotations

import itertools
import math
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from memlaw.config import check_value, read_yaml
from memlaw.errors import MemlawInputError
from memlaw.probe.config import GENERATORS, ProbeConfig


@dataclass
class SweepConfig:
    grids: list[dict[str, list[Any]]]  # each crossed on its own; the sweep is their union
    fixed: dict[str, Any]

    def cells(self) -> list[ProbeConfig]:
        """One probe per combination, in a stable order (grid by grid, the last axis varying
        fastest), each distinct cell once."""
        cells: list[ProbeConfig] = []
        for axes in self.grids:
            names = list(axes)
            for values in itertools.product(*(axes[n] for n in names)):
                cell = ProbeConfig(**self.fixed, **dict(zip(names, values, strict=True)))
                if cell not in cells:
                    cells.append(cell)
        return cells


#: Most values one range axis may expand to (a typo such as step 0.0001 would otherwise eat memory).
MAX_AXIS_VALUES = 10_000
#: Most cells a sweep may have unless the user raises the cap.
MAX_CELLS = 10_000


def load_sweep(path: str | Path, overrides: dict[str, Any] | None = None, *, max_cells: int = MAX_CELLS) -> SweepConfig:
    """The sweep in ``path``; ``overrides`` set fixed settings on top of the file's (``--set``).
    A grid of more than ``max_cells`` cells is refused before any cell is built."""
    raw = read_yaml(path)
    unknown = sorted(set(raw) - {"grid", "fixed"})
    if unknown:
        raise MemlawInputError(f"{path}: unknown section '{unknown[0]}' (a sweep has 'grid' and 'fixed')")
    grid, fixed = raw.get("grid") or {}, raw.get("fixed") or {}
    grids = grid if isinstance(grid, list) else [grid]
    if not grids or not all(isinstance(g, dict) and g for g in grids):
        raise MemlawInputError(
            f"{path}: 'grid' must map at least one probe setting to a list of values (or be a list of such mappings)"
        )
    if not isinstance(fixed, dict):
        raise MemlawInputError(f"{path}: 'fixed' must map probe settings to values")
    axis_names = {name for g in grids for name in g}
    for name in overrides or {}:
        if name in axis_names:
            raise MemlawInputError(f"--set {name}: '{name}' is an axis of {path}; change the grid instead")
    fixed = {**fixed, **(overrides or {})}
    hints = typing.get_type_hints(ProbeConfig)
    known = {f.name for f in fields(ProbeConfig)}
    for name in sorted(axis_names) + list(fixed):
        if name.replace("-", "_") not in known:
            raise MemlawInputError(f"{path}: unknown axis or setting '{name}' (known: {', '.join(sorted(known))})")
    overlap = sorted(axis_names & set(fixed))
    if overlap:
        raise MemlawInputError(f"{path}: '{overlap[0]}' is both an axis and a fixed setting")
    fixed = {name.replace("-", "_"): check_value(name, v, hints[name.replace("-", "_")]) for name, v in fixed.items()}
    sweep = SweepConfig([_axes(path, g, hints) for g in grids], fixed)
    size = sum(math.prod(len(values) for values in axes.values()) for axes in sweep.grids)
    if size > max_cells:
        raise MemlawInputError(
            f"{path}: the grid has {size:,} cells, more than {max_cells:,}: shrink it, or raise the cap (max_cells=)"
        )
    cells = sweep.cells()  # builds every ProbeConfig once: their own checks (ranges, required settings) run here
    # the data files every cell reads, checked as a probe checks them, before any model loads
    # (imported here: data files import transformers, which the light commands never load)
    from memlaw.data.files import load_items

    for data, fields_ in sorted({(c.data, tuple(c.fields or ())) for c in cells if c.data not in GENERATORS}):
        load_items(data, list(fields_) or None)
    return sweep


def _axes(path: str | Path, grid: dict[str, Any], hints: dict[str, Any]) -> dict[str, list[Any]]:
    axes = {name.replace("-", "_"): _axis_values(path, name, spec) for name, spec in grid.items()}
    return {name: [check_value(name, v, hints[name]) for v in values] for name, values in axes.items()}


def _axis_values(path: str | Path, name: str, spec: Any) -> list[Any]:
    if isinstance(spec, dict):
        if set(spec) != {"start", "stop", "step"}:
            raise MemlawInputError(f"{path}: axis '{name}' as a range needs exactly start, stop and step")
        start, stop, step = spec["start"], spec["stop"], spec["step"]
        numbers = (start, stop, step)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in numbers):
            raise MemlawInputError(f"{path}: axis '{name}': start, stop and step must be finite numbers")
        if step <= 0:
            raise MemlawInputError(f"{path}: axis '{name}': step must be > 0, got {step}")
        if (stop - start) / step + 1 > MAX_AXIS_VALUES:
            raise MemlawInputError(
                f"{path}: axis '{name}' from {start} to {stop} by {step} has more than {MAX_AXIS_VALUES:,} values"
            )
        values, value = [], start
        while value <= stop + 1e-12:
            values.append(value)
            value = start + step * len(values)
        spec = values
    if not isinstance(spec, list):
        spec = [spec]
    if not spec:
        raise MemlawInputError(f"{path}: axis '{name}' is empty: give at least one value")
    return spec
