"""``memlaw plan``: the rank a length needs, or the length a rank holds, from a fitted law."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from memlaw.constants import CERTIFY_LOSS
from memlaw.errors import MemlawInputError
from memlaw.io import write_json_atomic
from memlaw.law.fit import MemoryLaw
from memlaw.law.plan import plan_length, plan_rank


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("plan", help="plan a rank for a length (or a length for a rank)", description=__doc__)
    parser.add_argument("--law", required=True, help="law JSON written by memlaw fit --out")
    want = parser.add_mutually_exclusive_group(required=True)
    want.add_argument("--length", type=float, help="answer tokens to memorise: give the smallest rank that holds them")
    want.add_argument("--rank", type=float, help="adapter rank: give the longest length it holds")
    parser.add_argument("--ratio", type=float, help="which of the law's data ratios the content resembles")
    parser.add_argument("--initial-loss", type=float, help="mean loss of the content before training (nats/token)")
    parser.add_argument("--target-loss", type=float, default=CERTIFY_LOSS, help="final loss to reach (default ln 2)")
    parser.add_argument("--out", help="also write the plan as JSON here")
    parser.set_defaults(run=run)


def load_law(path: str | Path) -> MemoryLaw:
    file = Path(path)
    if not file.is_file():
        raise MemlawInputError(f"no such law file: {file} (write one with memlaw fit --out)")
    try:
        return MemoryLaw.from_dict(json.loads(file.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as err:
        raise MemlawInputError(f"{file} is not a law written by memlaw fit ({type(err).__name__}: {err})") from err


def run(args: argparse.Namespace) -> int:
    law = load_law(args.law)
    options = {"ratio": args.ratio, "initial_loss": args.initial_loss, "target_loss": args.target_loss}
    if args.length is not None:
        plan, asked = plan_rank(law, args.length, **options), "rank"
    else:
        plan, asked = plan_length(law, args.rank, **options), "length"
    print("\n".join(plan.describe(asked)))
    if args.out:
        write_json_atomic(args.out, plan.to_dict())
    return 0
