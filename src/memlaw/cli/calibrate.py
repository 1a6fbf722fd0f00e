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
from pathlib import Path

from memlaw.api.calibrate import CALIBRATION_SWEEPS, calibrate, calibration_store
from memlaw.cli.common import positive_number, quiet_libraries
from memlaw.cli.sweep import interrupted, parse_overrides
from memlaw.constants import DEFAULT_MODEL
from memlaw.errors import MemlawInputError
from memlaw.io import check_outputs
from memlaw.law.fit import SATURATION_RULES
from memlaw.law.library import user_law_path


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
    from memlaw.sweep.store import ResultsStore

    overrides = parse_overrides(args.overrides)
    if "placement" in overrides:
        raise MemlawInputError("--set placement: choose the placement with --placement (bypass or peft)")
    check_outputs(files=[("--out", args.out)], inputs=[("--store", args.store)])
    try:
        calibrate(
            args.model, placement=args.placement, store=args.store, budget_minutes=args.budget_minutes, out=args.out,
            gguf_file=args.gguf_file, overrides=overrides, saturation=args.saturation, bootstrap=args.bootstrap,
            progress=not args.quiet,
        )  # fmt: skip
    except KeyboardInterrupt as stop:
        store_path = Path(args.store or calibration_store(args.model, args.placement))
        if not store_path.is_file():  # stopped before any cell: nothing to keep
            raise
        with ResultsStore(str(store_path)) as store:
            return interrupted("calibrate", store, stop)
    out = args.out or user_law_path(args.model, args.placement)
    print(f"law: {out} (memlaw plan --model {args.model} --placement {args.placement} --data FILE uses it)")
    return 0
