"""Law data points: (rank, length, ΔL, final loss, ratio, parameters) from a store or a CSV."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from memlaw.config import settings_where
from memlaw.constants import lr_schedule
from memlaw.errors import MemlawInputError
from memlaw.io import whole
from memlaw.law.state import Reference
from memlaw.probe.config import ProbeConfig

#: Provenance kept with a fitted law: the settings the points were measured with.
PROVENANCE = settings_where(ProbeConfig, provenance=True)
#: Declared defaults, for stored configs that predate a setting.
DEFAULTS = {f.name: f.default for f in fields(ProbeConfig)}


@dataclass
class LawPoints:
    rank: np.ndarray
    length: np.ndarray
    delta_loss: np.ndarray
    final_loss: np.ndarray | None = None
    ratio: np.ndarray | None = None
    params: np.ndarray | None = None
    initial_loss: np.ndarray | None = None
    exact_match: np.ndarray | None = None
    certified: np.ndarray | None = None
    #: 1 where training ended on its budget or cap with the loss still falling, 0 where not, NaN
    #: where the cell predates the record (stored before ``until``).
    budget_limited: np.ndarray | None = None
    #: How training ended (budget, certified, converged, max_steps; "" when not recorded).
    stop_reason: np.ndarray | None = None
    steps: np.ndarray | None = None
    certified_step: np.ndarray | None = None  # NaN when not certified
    seconds: np.ndarray | None = None
    #: Hosts the cells ran on (from the store's worker column).
    hosts: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)

    def subset(self, keep: np.ndarray) -> LawPoints:
        arrays = {f.name: getattr(self, f.name) for f in fields(self)}
        return replace(self, **{k: v[keep] for k, v in arrays.items() if isinstance(v, np.ndarray)})

    def stored_bits(self) -> np.ndarray:
        """Information the adapter absorbed per cell: ΔL·ℓ nats, in bits."""
        return self.delta_loss * self.length / np.log(2)

    def bits_per_param(self) -> np.ndarray | None:
        return None if self.params is None else self.stored_bits() / self.params

    def planning_reference(self) -> Reference:
        """What planning needs besides the constants: mean initial loss per (ratio, ℓ), and the
        trainable parameters per unit of rank (constant for one placement)."""
        reference = Reference()
        if self.initial_loss is not None:
            ratios = [None] * len(self.length) if self.ratio is None else self.ratio.tolist()
            groups: dict[tuple, list[float]] = defaultdict(list)
            for key, loss in zip(
                zip(ratios, self.length.tolist(), strict=True), self.initial_loss.tolist(), strict=True
            ):
                groups[key].append(loss)
            reference.initial_loss = [
                {"ratio": ratio, "length": whole(length), "initial_loss": float(np.mean(losses))}
                for (ratio, length), losses in sorted(groups.items(), key=lambda g: (g[0][0] or 0.0, g[0][1]))
            ]
        if self.params is not None:
            per_rank = self.params / self.rank
            if np.allclose(per_rank, per_rank[0]):
                reference.params_per_rank = whole(per_rank[0])
        return reference


def load_points(source: str | Path) -> LawPoints:
    path = Path(source)
    if not path.is_file():
        raise MemlawInputError(f"no such file: {path} (give a results store or a CSV)")
    if path.suffix.lower() == ".csv":
        return _from_csv(path)
    with path.open("rb") as handle:
        if handle.read(16) != b"SQLite format 3\x00":  # reading must never turn a file into a store
            raise MemlawInputError(f"{path} is neither a results store (SQLite) nor a CSV: give one of those")
    from memlaw.sweep.store import ResultsStore

    with ResultsStore(path) as store:
        return points_from_rows(store.rows({"status": "done"}), path)


def points_from_rows(rows: list[dict[str, Any]], path: str | Path) -> LawPoints:
    """The law points of finished store rows (``path`` names their store in messages)."""
    if not rows:
        raise MemlawInputError(f"{path} holds no finished cells")
    configs = [json.loads(r["config"]) for r in rows]
    provenance = {}
    for key in PROVENANCE:
        values = sorted({json.dumps(c.get(key)) for c in configs})
        provenance[key] = [json.loads(v) for v in values] if len(values) > 1 else json.loads(values[0])
    provenance["ratios"] = sorted({c["ratio"] for c in configs})
    schedules = {
        lr_schedule(*(c.get(name, DEFAULTS[name]) for name in ("until", "plateau_steps", "plateau_tol")))
        for c in configs
    }
    provenance["lr_schedule"] = sorted(schedules) if len(schedules) > 1 else schedules.pop()
    column = lambda name: np.array([np.nan if r.get(name) is None else float(r[name]) for r in rows])
    return LawPoints(
        rank=column("rank"), length=column("length"), delta_loss=column("delta_loss"),
        final_loss=column("final_loss"), ratio=column("ratio"), params=column("trainable_params"),
        initial_loss=column("initial_loss"), exact_match=column("exact_match"), certified=column("certified"),
        budget_limited=column("budget_limited"), stop_reason=np.array([r.get("stop_reason") or "" for r in rows]),
        steps=column("steps"), certified_step=column("certified_step"), seconds=column("seconds"),
        hosts=sorted({r["worker"].rsplit(":", 1)[0] for r in rows if r.get("worker")}), provenance=provenance,
    )  # fmt: skip


def _from_csv(path: Path) -> LawPoints:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = {"rank", "length", "delta_loss"} - set(reader.fieldnames or [])
            if missing:
                raise MemlawInputError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
            rows = list(reader)
    except UnicodeDecodeError as err:
        raise MemlawInputError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start})") from err
    if not rows:
        raise MemlawInputError(f"{path} has no rows")

    def column(name: str) -> np.ndarray | None:
        if name not in rows[0]:
            return None
        values = []
        for number, row in enumerate(rows, start=1):
            if row[name] in (None, ""):
                raise MemlawInputError(f"{path} row {number}: '{name}' is empty (every row needs every column)")
            try:
                values.append(float(row[name]))
            except ValueError as err:
                raise MemlawInputError(f"{path} row {number}: '{name}' is not a number ({err})") from err
        return np.array(values)

    return LawPoints(
        column("rank"), column("length"), column("delta_loss"), column("final_loss"), column("ratio"),
        column("params"), column("initial_loss"), column("exact_match"), column("certified"),
        column("budget_limited"), provenance={"source": str(path)},
    )  # fmt: skip
