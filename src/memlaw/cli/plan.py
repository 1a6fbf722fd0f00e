"""``memlaw plan``: the rank a length (or a file) needs, or what a rank holds, from a fitted law."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from memlaw.constants import CERTIFY_LOSS
from memlaw.errors import MemlawInputError
from memlaw.io import write_json_atomic
from memlaw.law.fit import MemoryLaw
from memlaw.law.plan import Plan, content_warning, plan_items, plan_length, plan_rank


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("plan", help="plan a rank for a length (or a length for a rank)", description=__doc__)
    parser.add_argument("--law", required=True, help="law JSON written by memlaw fit --out")
    want = parser.add_mutually_exclusive_group()
    want.add_argument("--length", type=float, help="answer tokens to memorise: give the smallest rank that holds them")
    want.add_argument(
        "--rank", type=float, help="adapter rank: give the longest length (or, with --data, the items) it holds"
    )
    parser.add_argument(
        "--data",
        help="a file to memorise (JSONL of key/value, query/target or prompt/completion records, or plain text), "
        "encoded as memlaw train encodes it; the law's base model measures its initial loss",
    )
    parser.add_argument("--ratio", type=float, help="which of the law's data ratios the content resembles")
    parser.add_argument("--initial-loss", type=float, help="mean loss of the content before training (nats/token)")
    parser.add_argument("--target-loss", type=float, default=CERTIFY_LOSS, help="final loss to reach (default ln 2)")
    parser.add_argument("--out", help="also write the plan as JSON here")
    parser.add_argument("--json", action="store_true", help="print the plan as one JSON object instead of text")
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
    if args.data is not None:
        if args.length is not None or args.ratio is not None or args.initial_loss is not None:
            raise MemlawInputError(
                "--data measures the length and initial loss itself: drop --length, --ratio and --initial-loss"
            )
        lines, record = _plan_file(law, args)
    elif args.length is None and args.rank is None:
        raise MemlawInputError("say what to plan: --length N, --rank R or --data FILE")
    else:
        options = {"ratio": args.ratio, "initial_loss": args.initial_loss, "target_loss": args.target_loss}
        if args.length is not None:
            plan, asked = plan_rank(law, args.length, **options), "rank"
        else:
            plan, asked = plan_length(law, args.rank, **options), "length"
        lines, record = plan.describe(asked), _record(plan, asked)
    print(json.dumps(record, indent=2) if args.json else "\n".join(lines))
    if args.out:
        write_json_atomic(args.out, record)
    return 0


def _record(plan: Plan, asked: str) -> dict:
    """The plan's JSON, with the interval named after what was planned."""
    return {**plan.to_dict(), f"{asked}_interval": plan.interval}


def _plan_file(law: MemoryLaw, args: argparse.Namespace) -> tuple[list[str], dict]:
    """Plan for a user's file: the rank for all of it, or with --rank how many items fit."""
    from memlaw.probe.content import content_losses

    content = content_losses(_content_config(law, args.data))
    head = (
        f"{args.data}: {len(content.keys)} items, {content.length} answer tokens, "
        f"initial loss {content.initial_loss:.3g} nats/token under the base model"
    )
    facts = {"data": args.data, "items": len(content.keys), "file_length": content.length,
             "file_initial_loss": content.initial_loss}  # fmt: skip
    transfer = content_warning(law, content.initial_loss)
    if args.rank is None:
        plan = plan_rank(law, content.length, initial_loss=content.initial_loss, target_loss=args.target_loss)
        plan.warnings = transfer + plan.warnings
        return [head, *plan.describe("rank")], {**_record(plan, "rank"), **facts}
    lengths, losses = content.prefixes()
    held, plan = plan_items(law, args.rank, lengths, losses, target_loss=args.target_loss)
    if plan is None:
        first = plan_rank(law, float(lengths[0]), initial_loss=float(losses[0]), target_loss=args.target_loss)
        lines = [head, f"rank {args.rank:g} holds none of the items: the first alone needs rank {first.rank:g}"]
        lines += [f"warning: {w}" for w in transfer]
        return lines, {
            "rank": args.rank,
            "items_held": 0,
            "needed_for_first_item": first.rank,
            "warnings": transfer,
            **facts,
        }
    plan.warnings = transfer + plan.warnings
    describe = plan.describe("items")
    describe[0] = (
        f"rank {args.rank:g} holds the first {held} of {len(content.keys)} items ({plan.length:g} answer tokens)"
    )
    return [head, *describe], {**plan.to_dict(), "items_held": held, **facts}


def _content_config(law: MemoryLaw, data: str):
    """Probe settings that encode ``data`` exactly as the law's probes encoded theirs."""
    from memlaw.probe.config import ProbeConfig

    provenance = getattr(law, "provenance_", {}) or {}
    settings = {"data": data}
    for name in ("model", "gguf_file", "prompt_format", "system_prompt"):
        if name not in provenance:  # a law fitted before memlaw recorded it: the default
            continue
        value = provenance[name]  # None is a value here: no system message
        if isinstance(value, list):
            raise MemlawInputError(f"the law was fitted on several values of {name} ({value}): fit one law per {name}")
        settings[name] = value
    return ProbeConfig(**settings)
