"""``memlaw plan``: the rank a length (or a file) needs, or what a rank holds, from a fitted law.

Without --law, the law calibrated for --model (default: the default model) is used: the one
``memlaw calibrate`` wrote, else the one packaged with memlaw. With --data FILE --verify, the
plan is trained as the law's probes trained, and predicted and measured are printed side by
side and recorded in the track record, which every later plan on the model reports.
"""

from __future__ import annotations

import argparse
import json
import shlex

from memlaw.cli.common import check_output_file, non_negative_number, positive_int, positive_number, quiet_libraries
from memlaw.constants import CERTIFY_LOSS, DEFAULT_MODEL
from memlaw.errors import MemlawInputError
from memlaw.io import write_json_atomic
from memlaw.law.fit import MemoryLaw
from memlaw.law.library import find_law, load_law, memlaw_home
from memlaw.law.plan import Plan, content_warning, margin_for, plan_items, plan_length, plan_rank
from memlaw.law.track import TrackRecord

#: The certification probability plans aim for when the law can tell it.
DEFAULT_CONFIDENCE = 0.9


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("plan", help="plan a rank for a length (or a length for a rank)", description=__doc__)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--law", help="law JSON written by memlaw fit --out (default: the law calibrated for --model)")
    source.add_argument(
        "--model", help=f"use the law calibrated for this model (default: {DEFAULT_MODEL}, whose law ships with memlaw)"
    )
    want = parser.add_mutually_exclusive_group()
    want.add_argument(
        "--length", type=positive_number, help="answer tokens to memorise: give the smallest rank that holds them"
    )
    want.add_argument(
        "--rank",
        type=positive_int,
        help="adapter rank: give the longest length (or, with --data, the items) it holds",
    )
    parser.add_argument(
        "--data",
        help="a file to memorise (JSONL, CSV or Parquet records, or plain text), encoded as memlaw train encodes "
        "it; the law's base model measures its initial loss",
    )
    parser.add_argument("--fields", help="with --data: KEY,VALUE columns of the records (default: detected)")
    parser.add_argument(
        "--ratio", type=non_negative_number, help="which of the law's data ratios the content resembles"
    )
    parser.add_argument(
        "--initial-loss", type=non_negative_number, help="mean loss of the content before training (nats/token)"
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--confidence",
        type=positive_number,
        help=f"plan for certified recall with this probability (default {DEFAULT_CONFIDENCE} when the law has a "
        "certification model)",
    )
    target.add_argument(
        "--target-loss",
        type=non_negative_number,
        help="plan for this mean final loss instead (default without a model: ln 2)",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="with --data: train at the planned rank as the law's probes trained, print predicted against "
        "measured and add the outcome to the track record",
    )
    parser.add_argument(
        "--track-record", help="SQLite file of verified plans (default: track-record.db in $MEMLAW_HOME)"
    )
    parser.add_argument("--out", help="also write the plan as JSON here")
    parser.add_argument("--json", action="store_true", help="print the plan as one JSON object instead of text")
    parser.add_argument("--quiet", action="store_true", help="no progress bar while verifying")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    _check_options(args)
    if args.law:
        law, law_name = load_law(args.law), args.law
    else:
        law, law_name = find_law(args.model or DEFAULT_MODEL)
    args.target_loss, args.confidence = _target(law, args)
    confidence = args.confidence
    if args.data is not None:
        lines, record = _plan_file(law, law_name, args)
    else:
        options = {
            "ratio": args.ratio, "initial_loss": args.initial_loss, "target_loss": args.target_loss,
            "confidence": confidence,
        }  # fmt: skip
        if args.length is not None:
            plan, asked = plan_rank(law, args.length, **options), "rank"
        else:
            plan, asked = plan_length(law, args.rank, **options), "length"
        lines, record = plan.describe(asked), _record(plan, asked)
    model = _law_model(law)
    if model is not None:
        total, certified = _track_record(args).summary(model)
        record["track_record"] = {"model": model, "verified": total, "certified": certified}
        lines.append(f"{total} verified plans on this model: {certified} certified")
    record.update(law=law_name, target_loss=None if confidence else args.target_loss, confidence=confidence)
    if confidence is not None:
        record["target_margin"] = margin_for(law, confidence)
        lines.insert(
            0,
            f"planned to certify recall with probability {confidence:.0%}: a predicted loss reduction at least "
            f"{record['target_margin']:.3g}× what a mean loss of ln 2 needs (the law's certification model)",
        )
    if args.out:  # written first, so that a place that cannot be written fails with nothing printed
        write_json_atomic(args.out, record)
    print(json.dumps(record, indent=2) if args.json else "\n".join(lines))
    return 0


def _check_options(args: argparse.Namespace) -> None:
    if args.data is not None:
        if args.length is not None or args.ratio is not None or args.initial_loss is not None:
            raise MemlawInputError(
                "--data measures the length and initial loss itself: drop --length, --ratio and --initial-loss"
            )
        if args.verify and args.rank is not None:
            raise MemlawInputError("--verify checks a planned rank: drop --rank")
    elif args.length is None and args.rank is None:
        raise MemlawInputError("say what to plan: --length N, --rank R or --data FILE")
    elif args.verify or args.fields:
        raise MemlawInputError("--verify and --fields need --data FILE")
    if args.out:
        check_output_file(args.out, "--out")


def _target(law: MemoryLaw, args: argparse.Namespace) -> tuple[float, float | None]:
    """(the mean final loss to plan for, or the certification probability to plan for instead)."""
    if args.target_loss is not None:
        return args.target_loss, None
    confidence = args.confidence
    if confidence is None and getattr(law, "certification_", None) is not None:
        confidence = DEFAULT_CONFIDENCE
    if confidence is not None:
        margin_for(law, confidence)  # checks the law can plan for it
    return CERTIFY_LOSS, confidence


def _record(plan: Plan, asked: str) -> dict:
    """The plan's JSON, with the interval named after what was planned."""
    return {**plan.to_dict(), f"{asked}_interval": plan.interval}


def _law_model(law: MemoryLaw) -> str | None:
    model = (getattr(law, "provenance_", {}) or {}).get("model")
    return model if isinstance(model, str) else None


def _track_record(args: argparse.Namespace) -> TrackRecord:
    return TrackRecord(args.track_record or memlaw_home() / "track-record.db")


def _plan_file(law: MemoryLaw, law_name: str, args: argparse.Namespace) -> tuple[list[str], dict]:
    """Plan for a user's file: the rank for all of it, or with --rank how many items fit."""
    quiet_libraries(quiet=args.quiet)  # first: tqdm reads its settings when first imported
    from dataclasses import asdict

    from memlaw.law.verify import autocast_note, law_config, verify_plan
    from memlaw.probe.content import content_losses
    from memlaw.probe.data import prepare

    fields = None if args.fields is None else [part.strip() for part in args.fields.split(",")]
    config = law_config(law, args.data, fields=fields)
    loaded, _ = prepare(config, None)  # the file checked against the model before its weights load
    content = content_losses(config, loaded)
    head = (
        f"{args.data}: {len(content.keys)} items, {content.length} answer tokens, "
        f"initial loss {content.initial_loss:.3g} nats/token under the base model"
    )
    facts = {"data": args.data, "items": len(content.keys), "file_length": content.length,
             "file_initial_loss": content.initial_loss}  # fmt: skip
    transfer = content_warning(law, content.initial_loss)
    target = {"target_loss": args.target_loss, "confidence": args.confidence}
    if args.rank is None:
        plan = plan_rank(law, content.length, initial_loss=content.initial_loss, **target)
        plan.warnings = transfer + plan.warnings
        lines, record = [head, *plan.describe("rank")], {**_record(plan, "rank"), **facts}
        training = law_config(law, args.data, fields=fields, rank=int(plan.rank))
        record["train_command"] = train_command(training)
        lines.append(f"to train as planned: {record['train_command']}")
        if args.verify:
            note = autocast_note(law, training)
            verified = verify_plan(plan, training, law_name=law_name, loaded=loaded, progress=not args.quiet)
            _track_record(args).record(verified)
            lines += [f"note: {note}"] * (note is not None) + [f"verified: {verified.describe()}"]
            record["verified"] = {**asdict(verified), "note": note}
        return lines, record
    lengths, losses = content.prefixes()
    held, plan = plan_items(law, args.rank, lengths, losses, **target)
    if plan is None:
        first = plan_rank(law, float(lengths[0]), initial_loss=float(losses[0]), **target)
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


def train_command(config) -> str:
    """The ``memlaw train`` line that trains exactly as ``config`` (a plan's verification) does:
    every setting of the law's budget that differs from train's own defaults."""
    from dataclasses import fields

    from memlaw.cli.train import TRAIN_DEFAULTS
    from memlaw.law.points import PROVENANCE
    from memlaw.probe.config import ProbeConfig

    words = ["memlaw", "train", shlex.quote(config.data), "--out", "ADAPTER_DIR"]
    defaults = {f.name: TRAIN_DEFAULTS.get(f.name, f.default) for f in fields(ProbeConfig)}
    for name in (*PROVENANCE, "rank", "fields"):
        value = getattr(config, name)
        if name == "data" or value == defaults[name]:
            continue
        if isinstance(value, list):
            text = ",".join(map(str, value))
        elif value is None or isinstance(value, bool):
            text = str(value).lower()
        else:
            text = str(value)
        words += [f"--{name.replace('_', '-')}", shlex.quote(text)]
    return " ".join(words)
