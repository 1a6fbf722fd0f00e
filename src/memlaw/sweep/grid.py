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

Any probe setting can be an axis. Values are type-checked against ``ProbeConfig`` where the
config is read, so a bad sweep fails before any model is loaded.
"""

from __future__ import annotations

import itertools
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from memlaw.config import check_value, read_yaml
from memlaw.errors import MemlawInputError
from memlaw.probe.config import ProbeConfig


@dataclass
class SweepConfig:
    axes: dict[str, list[Any]]
    fixed: dict[str, Any]

    def cells(self) -> list[ProbeConfig]:
        """One probe per combination, in a stable order (the last axis varies fastest)."""
        names = list(self.axes)
        return [
            ProbeConfig(**self.fixed, **dict(zip(names, values, strict=True)))
            for values in itertools.product(*(self.axes[n] for n in names))
        ]


def load_sweep(path: str | Path, overrides: dict[str, Any] | None = None) -> SweepConfig:
    """The sweep in ``path``; ``overrides`` set fixed settings on top of the file's (``--set``)."""
    raw = read_yaml(path)
    unknown = sorted(set(raw) - {"grid", "fixed"})
    if unknown:
        raise MemlawInputError(f"{path}: unknown section '{unknown[0]}' (a sweep has 'grid' and 'fixed')")
    grid, fixed = raw.get("grid") or {}, raw.get("fixed") or {}
    if not isinstance(grid, dict) or not grid:
        raise MemlawInputError(f"{path}: 'grid' must map at least one probe setting to a list of values")
    if not isinstance(fixed, dict):
        raise MemlawInputError(f"{path}: 'fixed' must map probe settings to values")
    for name in overrides or {}:
        if name in grid:
            raise MemlawInputError(f"--set {name}: '{name}' is an axis of {path}; change the grid instead")
    fixed = {**fixed, **(overrides or {})}
    hints = typing.get_type_hints(ProbeConfig)
    known = {f.name for f in fields(ProbeConfig)}
    for name in list(grid) + list(fixed):
        if name.replace("-", "_") not in known:
            raise MemlawInputError(f"{path}: unknown axis or setting '{name}' (known: {', '.join(sorted(known))})")
    overlap = sorted(set(grid) & set(fixed))
    if overlap:
        raise MemlawInputError(f"{path}: '{overlap[0]}' is both an axis and a fixed setting")
    axes = {name.replace("-", "_"): _axis_values(path, name, spec) for name, spec in grid.items()}
    axes = {name: [check_value(name, v, hints[name]) for v in values] for name, values in axes.items()}
    fixed = {name.replace("-", "_"): check_value(name, v, hints[name.replace("-", "_")]) for name, v in fixed.items()}
    sweep = SweepConfig(axes, fixed)
    sweep.cells()  # builds every ProbeConfig once: their own checks (ranges, required settings) run here
    return sweep


def _axis_values(path: str | Path, name: str, spec: Any) -> list[Any]:
    if isinstance(spec, dict):
        if set(spec) != {"start", "stop", "step"}:
            raise MemlawInputError(f"{path}: axis '{name}' as a range needs exactly start, stop and step")
        start, stop, step = spec["start"], spec["stop"], spec["step"]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (start, stop, step)) or step <= 0:
            raise MemlawInputError(f"{path}: axis '{name}': start, stop and step must be numbers, step > 0")
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
