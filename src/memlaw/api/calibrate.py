"""``memlaw.calibrate``: the standard calibration sweep for a model, fitted into the law that
``memlaw.plan(model=M)`` then finds.

The sweep is a packaged one, sized for the default model: ``memlaw/laws/calibration.yaml`` for
the paper's bypass, ``calibration-peft.yaml`` for the PEFT LoRA on the MLP of one layer that
``memlaw.train`` trains by default. Random tokens and text at two ratios, each probe trained
until it converges. For another model the lengths scale with the model's width (the adapter's
parameters per rank) and the adapter sits two layers below the top, as in the default model's
laws. Groups run in the file's order, and no new group starts once the time budget is spent;
the store keeps every finished cell, so calling again continues where it stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from memlaw.constants import DEFAULT_MODEL, LAYERS_FROM_TOP
from memlaw.errors import MemlawInputError
from memlaw.io import check_outputs, write_json_atomic
from memlaw.law.fit import MemoryLaw
from memlaw.law.library import PACKAGED_LAWS, law_file_name, memlaw_home, user_law_path

#: Width the packaged grid's lengths were sized for (SmolLM2-135M: d_model 576).
REFERENCE_WIDTH = 576
#: The packaged sweep of each placement.
CALIBRATION_SWEEPS = {"bypass": "calibration.yaml", "peft": "calibration-peft.yaml"}
#: Cells fewer than this and no law is written: the covariate form has 5 constants.
MIN_CELLS = 8


def calibration_store(model: str, placement: str) -> Path:
    """Where a calibration keeps its cells unless told otherwise."""
    return memlaw_home() / "calibration" / law_file_name(model, placement).replace(".json", ".db")


def calibrate(
    model: str = DEFAULT_MODEL,
    *,
    placement: str = "peft",
    store: str | Path | None = None,
    budget_minutes: float = 60.0,
    out: str | Path | None = None,
    gguf_file: str | None = None,
    overrides: dict | None = None,
    saturation: str = "loss",
    bootstrap: int = 1000,
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> MemoryLaw:
    """Calibrate ``model``'s law for ``placement`` and write it to ``out`` (default: where
    ``memlaw.plan(model=...)`` finds it). ``overrides`` fix probe settings for every cell;
    ``log`` receives a line per finished group and the fit's summary. A KeyboardInterrupt leaves
    the finished cells in ``store`` for the next call."""
    from memlaw.law.compare import CALIBRATION_FORMS, fit_calibration
    from memlaw.law.points import load_points
    from memlaw.law.summary import describe_fit
    from memlaw.models.loading import load_model_config
    from memlaw.sweep.runner import run_sweep
    from memlaw.sweep.store import ResultsStore

    if placement not in CALIBRATION_SWEEPS:
        raise MemlawInputError(f"placement={placement!r}: calibrate knows {', '.join(sorted(CALIBRATION_SWEEPS))}")
    if "placement" in (overrides or {}):
        raise MemlawInputError("choose the placement with placement=, not among the overrides")
    check_outputs(files=[("out", out)], inputs=[("store", store)])
    config = load_model_config(model, gguf_file)
    depth, width = getattr(config, "num_hidden_layers", None), getattr(config, "hidden_size", None)
    if not depth or not width:
        raise MemlawInputError(f"{model}: its config names no num_hidden_layers and hidden_size to size the sweep")
    groups = _groups(model, gguf_file, placement, int(depth), int(width), overrides or {})
    store_path = str(store or calibration_store(model, placement))
    deadline = time.monotonic() + 60 * budget_minutes
    with ResultsStore(store_path) as results:
        for number, group in enumerate(groups, start=1):
            if time.monotonic() > deadline:
                log(f"time budget spent after {number - 1} of {len(groups)} groups: run again to continue")
                break
            report = run_sweep(group, results, progress=progress)
            done = f"{report.done} done, {report.skipped} stored before, {report.failed} failed"
            log(f"group {number}/{len(groups)}: {done}")
        finished = len(results.rows({"status": "done"}))
    if finished < MIN_CELLS:
        raise MemlawInputError(
            f"{finished} cells finished, too few for a law (at least {MIN_CELLS}): "
            "raise budget_minutes= or run the calibration again"
        )
    points = load_points(store_path)
    # cells that reached the step cap while still improving stay in: the law is what the budget
    # reaches, the budget memlaw train and --verify use (a PEFT LoRA near capacity needs the cap)
    law = fit_calibration(
        points, MemoryLaw(bootstrap=bootstrap, keep_budget_limited=True, saturation=saturation),
        max_rank=int(width), layers=int(depth),
    )  # fmt: skip
    log(f"law form: {law.form} (lowest held-out error of {', '.join(CALIBRATION_FORMS)})")
    log("\n".join(describe_fit(law, points)))
    write_json_atomic(out or user_law_path(model, placement), law.to_dict())
    return law


def _groups(model: str, gguf_file: str | None, placement: str, depth: int, width: int, overrides: dict) -> list:
    """The packaged sweep's groups for this model: its settings and the caller's, checked as a
    sweep checks them (before any store exists), lengths scaled to the model's width."""
    from memlaw.sweep.grid import SweepConfig, load_sweep

    standard = load_sweep(
        str(resources.files(PACKAGED_LAWS).joinpath(CALIBRATION_SWEEPS[placement])),
        {"model": model, "gguf_file": gguf_file, "layer": max(0, depth - LAYERS_FROM_TOP), **overrides},
    )
    scale = width / REFERENCE_WIDTH
    return [
        SweepConfig([{**grid, "length": sorted({max(8, round(n * scale)) for n in grid["length"]})}], standard.fixed)
        for grid in standard.grids
    ]
