"""``memlaw report``: fit (or load) the law and write a folder with figures, cells and a plan."""

from __future__ import annotations

import argparse

from memlaw.cli.common import positive_number
from memlaw.cli.fit import add_fit_options, fit_from_args
from memlaw.io import check_outputs
from memlaw.law.library import load_law
from memlaw.law.points import load_points
from memlaw.report import write_report


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("report", help="write a report folder: law, figures, cells, plan", description=__doc__)
    parser.add_argument("--from", dest="source", required=True, help="results store (.db) or CSV the law comes from")
    parser.add_argument("--out", required=True, help="report folder to create (must not exist or be empty)")
    parser.add_argument("--law", help="use this law JSON instead of fitting one")
    parser.add_argument("--plan-length", type=positive_number, help="also plan the rank for this many answer tokens")
    parser.add_argument("--format", default="png", choices=["png", "svg"], help="figure format")
    add_fit_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    check_outputs(folders=[("--out", args.out)], inputs=[("--from", args.source), ("--law", args.law)])
    points = load_points(args.source)
    law = load_law(args.law) if args.law else fit_from_args(args, points)
    summary = write_report(args.out, law, points, plan_length=args.plan_length, image_format=args.format)
    print(f"report: {summary}")
    return 0
