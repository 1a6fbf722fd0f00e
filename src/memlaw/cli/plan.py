"""``memlaw plan``: the rank a length (or a file) needs, or what a rank holds, from a fitted law.

Without --law, the law calibrated for --model (default: the default model) and --placement
(default: peft, the LoRA memlaw train trains) is used: the one ``memlaw calibrate`` wrote, else
the one packaged with memlaw. A law holds only for the adapter it was calibrated on, so naming
another (--target-modules, --layer) is refused with how to calibrate for it. With --data FILE
--verify, the plan is trained as the law's probes trained, and predicted and measured are
printed side by side and recorded in the track record, which every later plan on the model
reports. --emit peft DIR writes the planned adapter as PEFT's LoraConfig, with the law's
training budget beside it.
"""

from __future__ import annotations

import argparse
import json

from memlaw.api.plan import DEFAULT_CONFIDENCE, DEFAULT_PLACEMENT, choose_law, peft_layers, plan
from memlaw.cli.common import non_negative_number, positive_int, positive_number, quiet_libraries
from memlaw.constants import DEFAULT_MODEL
from memlaw.errors import MemlawInputError
from memlaw.io import check_outputs, write_json_atomic

#: What --emit can write.
EMIT_FORMATS = ("peft",)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("plan", help="plan a rank for a length (or a length for a rank)", description=__doc__)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--law", help="law JSON written by memlaw fit --out (default: the law calibrated for --model)")
    source.add_argument(
        "--model", help=f"use the law calibrated for this model (default: {DEFAULT_MODEL}, whose law ships with memlaw)"
    )
    parser.add_argument(
        "--placement", choices=("bypass", "peft"),
        help=f"the adapter to plan for (default with --model: {DEFAULT_PLACEMENT}, the LoRA on one layer's MLP that "
        "memlaw train trains; bypass: the paper's instrument)",
    )  # fmt: skip
    parser.add_argument(
        "--target-modules", help="PEFT modules the adapter adapts, comma-separated (must be the law's; default: its)"
    )
    parser.add_argument(
        "--layer", help="the adapter's layer, negative from the top, a comma list or 'all' (must be the law's)"
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
    parser.add_argument(
        "--emit", nargs=2, metavar=("FORMAT", "DIR"),
        help="also write the planned adapter's config into the new folder DIR: peft writes PEFT's "
        "adapter_config.json (LoraConfig.from_pretrained(DIR) loads it) and training.json, the law's budget",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the plan as one JSON object instead of text")
    parser.add_argument("--quiet", action="store_true", help="no progress bar while verifying")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    _check_options(args)
    modules = None if args.target_modules is None else [m.strip() for m in args.target_modules.split(",")]
    adapter = {"model": args.model, "placement": args.placement, "target_modules": modules, "layer": args.layer}
    if args.emit:  # checked before any work: the layers PEFT will adapt
        peft_layers(choose_law(args.law, **adapter))
    if args.data is not None:
        quiet_libraries(quiet=args.quiet)  # first: tqdm reads its settings when first imported
    planned = plan(
        args.data, length=args.length, rank=args.rank, law=args.law, **adapter,
        fields=None if args.fields is None else [part.strip() for part in args.fields.split(",")],
        ratio=args.ratio, initial_loss=args.initial_loss, confidence=args.confidence, target_loss=args.target_loss,
        track_record=args.track_record,
    )  # fmt: skip
    if args.verify:
        planned.verify(progress=not args.quiet)
    record, lines = planned.to_dict(), planned.describe()
    if args.out:  # written first, so that a place that cannot be written fails with nothing printed
        write_json_atomic(args.out, record)
    if args.emit:
        emitted = planned.write_peft(args.emit[1])
        if not args.json:
            lines.append(f"PEFT config of the planned adapter: {emitted} (LoraConfig.from_pretrained loads it)")
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
    if args.emit and args.emit[0] not in EMIT_FORMATS:
        raise MemlawInputError(f"--emit {args.emit[0]}: unknown format (known: {', '.join(EMIT_FORMATS)})")
    check_outputs(
        files=[("--out", args.out)],
        folders=[("--emit", args.emit[1] if args.emit else None)],
        inputs=[("--data", args.data), ("--law", args.law), ("--track-record", args.track_record)],
    )
