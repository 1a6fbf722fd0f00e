"""``memlaw calibrate``: the standard calibration sweep for a model, fitted into the law that
``memlaw plan --model M`` then finds.

The sweep is a packaged one, sized for the default model: ``memlaw/laws/calibration.yaml`` for
the paper's bypass, ``calibration-peft.yaml`` for the PEFT LoRA on the MLP of one layer that
``memlaw train`` trains by default (--placement). Random tokens and text at two ratios, each
probe trained until it converges. For another model the lengths scale with the model's width
(the adapter's parameters per rank) and the adapter sits two layers below the top, as in the
default model's laws. Groups run in the file's order, and no new group starts once
--budget-minutes is spent; the store keeps every finished cell, so running the command again
continues where it stopped. The law is fitted with the content's initial loss as a covariate,
so that it can plan for files unlike the calibration data.
"""

from __future__ import annotations

import argparse
import time
from importlib import resources

from memlaw.cli.common import check_outputs, positive_number, quiet_libraries
from memlaw.cli.sweep import interrupted, parse_overrides
from memlaw.constants import DEFAULT_MODEL, LAYERS_FROM_TOP
from memlaw.errors import MemlawInputError
from memlaw.io import write_json_atomic
from memlaw.law.fit import SATURATION_RULES
from memlaw.law.library import PACKAGED_LAWS, law_file_name, memlaw_home, user_law_path

#: The law forms calibration tries: the content's initial loss as a covariate, raw or above ln 2.
#: The one with the lower held-out error is kept (docs/planning.md).
CALIBRATION_FORMS = ("initial", "excess")
#: Width the packaged grid's lengths were sized for (SmolLM2-135M: d_model 576).
REFERENCE_WIDTH = 576
#: The packaged sweep of each placement.
CALIBRATION_SWEEPS = {"bypass": "calibration.yaml", "peft": "calibration-peft.yaml"}
#: Cells fewer than this and no law is written: the covariate form has 5 constants.
MIN_CELLS = 8


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "calibrate", help="calibrate the law for a model (sweep, then fit)", description=__doc__
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"the model to calibrate (default: {DEFAULT_MODEL})")
    parser.add_argument("--gguf-file", help="GGUF file name inside --model's folder or repo")
    parser.add_argument(
        "--placement", choices=sorted(CALIBRATION_SWEEPS), default="peft",
        help="the adapter the law is for: PEFT LoRA on one layer's MLP (default: what memlaw train trains and "
        "memlaw plan plans for) or the paper's bypass",
    )  # fmt: skip
    parser.add_argument(
        "--budget-minutes", type=positive_number, default=60.0, help="start no new group after this long"
    )
    parser.add_argument("--store", help="results store (default: calibration/<model>.db in $MEMLAW_HOME)")
    parser.add_argument("--out", help="law file to write (default: where memlaw plan --model finds it)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SETTING=VALUE",
        help="fix a probe setting for every cell (repeatable; e.g. autocast=true, layer=20)",
    )  # fmt: skip
    parser.add_argument(
        "--saturation", choices=SATURATION_RULES, default="loss",
        help="which cells the law leaves out as saturated: final loss below ln 2 (default), or only the certified "
        "ones (calibration probes stop at certification; keeps more cells where few exceed ln 2)",
    )  # fmt: skip
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples for the law's 95%% intervals")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    quiet_libraries(quiet=args.quiet)  # first: tqdm reads its settings when first imported
    from memlaw.law.fit import MemoryLaw
    from memlaw.law.points import load_points
    from memlaw.law.summary import describe_fit
    from memlaw.models.loading import load_model_config
    from memlaw.sweep.grid import SweepConfig, load_sweep
    from memlaw.sweep.runner import run_sweep
    from memlaw.sweep.store import ResultsStore

    overrides = parse_overrides(args.overrides)
    if "placement" in overrides:
        raise MemlawInputError("--set placement: choose the placement with --placement (bypass or peft)")
    check_outputs(files=[("--out", args.out)], inputs=[("--store", args.store)])
    config = load_model_config(args.model, args.gguf_file)
    depth, width = getattr(config, "num_hidden_layers", None), getattr(config, "hidden_size", None)
    if not depth or not width:
        raise MemlawInputError(f"{args.model}: its config names no num_hidden_layers and hidden_size to size the sweep")
    # the model's settings and the user's, checked as a sweep checks them, before any store exists
    standard = load_sweep(
        str(resources.files(PACKAGED_LAWS).joinpath(CALIBRATION_SWEEPS[args.placement])),
        {"model": args.model, "gguf_file": args.gguf_file, "layer": max(0, int(depth) - LAYERS_FROM_TOP), **overrides},
    )
    fixed = standard.fixed
    scale = int(width) / REFERENCE_WIDTH
    groups = [
        SweepConfig([{**grid, "length": sorted({max(8, round(n * scale)) for n in grid["length"]})}], fixed)
        for grid in standard.grids
    ]
    law_name = law_file_name(args.model, args.placement)
    store_path = str(args.store or memlaw_home() / "calibration" / law_name.replace(".json", ".db"))
    deadline = time.monotonic() + 60 * args.budget_minutes
    with ResultsStore(store_path) as store:
        for number, group in enumerate(groups, start=1):
            if time.monotonic() > deadline:
                print(f"time budget spent after {number - 1} of {len(groups)} groups: run again to continue")
                break
            try:
                report = run_sweep(group, store, progress=not args.quiet)
            except KeyboardInterrupt as stop:
                return interrupted("calibrate", store, stop)
            done = f"{report.done} done, {report.skipped} stored before, {report.failed} failed"
            print(f"group {number}/{len(groups)}: {done}")
        finished = len(store.rows({"status": "done"}))
    if finished < MIN_CELLS:
        raise MemlawInputError(
            f"{finished} cells finished, too few for a law (at least {MIN_CELLS}): "
            "raise --budget-minutes or run the command again"
        )
    points = load_points(store_path)
    # cells that reached the step cap while still improving stay in: the law is what the budget
    # reaches, the budget memlaw train and --verify use (a PEFT LoRA near capacity needs the cap)
    law = _best_form(points, MemoryLaw(bootstrap=args.bootstrap, keep_budget_limited=True, saturation=args.saturation))
    # full rank (the bypass's, and the MLP projections' smaller side): plans never go beyond it
    law.reference_["max_rank"] = int(width)
    law.reference_["layers"] = int(depth)  # so that plans can read a layer counted from the top
    print(f"law form: {law.form} (lowest held-out error of {', '.join(CALIBRATION_FORMS)})")
    print("\n".join(describe_fit(law, points)))
    out = args.out or user_law_path(args.model, args.placement)
    write_json_atomic(out, law.to_dict())
    print(f"law: {out} (memlaw plan --model {args.model} --placement {args.placement} --data FILE uses it)")
    return 0


def _best_form(points, law):
    """``law`` fitted with the calibration form that predicts its held-out cells best (the forms
    are compared without bootstrap; only the chosen one pays for its intervals)."""
    from memlaw.law.compare import heldout_error

    errors = [heldout_error(points, law.clone(form=form, bootstrap=0).fit_points(points)) for form in CALIBRATION_FORMS]
    scored = [(error, i) for i, error in enumerate(errors) if error is not None]
    return law.clone(form=CALIBRATION_FORMS[min(scored)[1] if scored else 0]).fit_points(points)
