"""``memlaw fit``: fit the Parametric Memory Law to stored probes (or a CSV) and save it."""

from __future__ import annotations

import argparse

from memlaw.cli.common import non_negative_int, non_negative_number
from memlaw.constants import CERTIFY_LOSS
from memlaw.io import check_outputs, write_json_atomic
from memlaw.law.fit import LOSSES, SATURATION_RULES, MemoryLaw
from memlaw.law.forms import FORMS
from memlaw.law.points import load_points
from memlaw.law.summary import describe_fit


def add_fit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--form",
        default="full",
        choices=list(FORMS),
        help="full: with offset b; no_offset: without; initial / excess: with the content's initial loss "
        "(or its excess above ln 2) as a covariate u^γ, for laws fitted on several kinds of content",
    )
    parser.add_argument("--loss", default="squares", choices=LOSSES, help="least squares or Huber")
    parser.add_argument(
        "--saturation",
        default="loss",
        choices=SATURATION_RULES,
        help="which cells count as saturated and are left out: those whose final loss is below --saturation-loss "
        "(default), or the certified ones only (see docs/convergence.md)",
    )
    parser.add_argument(
        "--saturation-loss", type=non_negative_number, default=CERTIFY_LOSS, help="the loss rule's threshold"
    )
    parser.add_argument(
        "--keep-budget-limited",
        action="store_true",
        help="also fit cells whose loss was still falling when training stopped (a law of the budget)",
    )
    parser.add_argument(
        "--bootstrap", type=non_negative_int, default=1000, help="resamples for the 95%% intervals (0: none)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")


def fit_from_args(args: argparse.Namespace, points) -> MemoryLaw:
    options = {
        "form": args.form, "loss": args.loss, "saturation": args.saturation, "saturation_loss": args.saturation_loss,
        "keep_budget_limited": args.keep_budget_limited, "seed": args.seed,
    }  # fmt: skip
    return MemoryLaw(bootstrap=args.bootstrap, **options).fit_points(points)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("fit", help="fit ΔL = C·r^α·ℓ^(−β) + b to probe results", description=__doc__)
    parser.add_argument(
        "--from", dest="source", required=True, help="results store (.db) or CSV (rank,length,delta_loss,...)"
    )
    parser.add_argument("--out", help="save the fitted law as JSON here")
    add_fit_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    check_outputs(files=[("--out", args.out)], inputs=[("--from", args.source)])
    points = load_points(args.source)
    law = fit_from_args(args, points)
    print("\n".join(describe_fit(law, points)))
    if args.out:
        write_json_atomic(args.out, law.to_dict())
        print(f"law: {args.out}")
    return 0
