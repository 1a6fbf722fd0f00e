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
import shlex
from pathlib import Path

from memlaw.cli.common import (
    check_outputs,
    non_negative_number,
    positive_int,
    positive_number,
    quiet_libraries,
)
from memlaw.constants import CERTIFY_LOSS, DEFAULT_LAYER_FRACTION, DEFAULT_MODEL
from memlaw.errors import MemlawInputError
from memlaw.io import write_dir_atomic, write_json_atomic
from memlaw.law.fit import MemoryLaw
from memlaw.law.library import (
    check_law_adapter,
    describe_adapter,
    find_law,
    law_depth,
    layer_list,
    load_law,
    memlaw_home,
)
from memlaw.law.plan import Plan, content_warning, margin_for, plan_items, plan_length, plan_rank
from memlaw.law.track import TrackRecord

#: The certification probability plans aim for when the law can tell it.
DEFAULT_CONFIDENCE = 0.9
#: The adapter plans are for unless the user names another: what memlaw train trains.
DEFAULT_PLACEMENT = "peft"
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
    if args.law:
        law, law_name = load_law(args.law), args.law
    else:
        law, law_name = find_law(args.model or DEFAULT_MODEL, args.placement or DEFAULT_PLACEMENT)
    modules = None if args.target_modules is None else [m.strip() for m in args.target_modules.split(",")]
    adapter = check_law_adapter(law, law_name, placement=args.placement, target_modules=modules, layer=args.layer)
    if args.emit:  # checked before any work: the layers PEFT will adapt
        emit_layers = peft_layers(law, adapter, law_name)
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
    lines.append(f"adapter: {describe_adapter(adapter)} (what {law_name} was calibrated on)")
    model = _law_model(law)
    if model is not None:
        total, certified = _track_record(args).summary(model, adapter["placement"])
        record["track_record"] = {
            "model": model, "placement": adapter["placement"], "verified": total, "certified": certified
        }  # fmt: skip
        lines.append(f"{total} verified plans on this model: {certified} certified ({adapter['placement']} adapters)")
    record.update(law=law_name, target_loss=None if confidence else args.target_loss, confidence=confidence)
    if confidence is not None:
        record["target_margin"] = margin_for(law, confidence)
        lines.insert(
            0,
            f"planned to certify recall with probability {confidence:.0%}: a predicted loss reduction at least "
            f"{record['target_margin']:.3g}× what a mean loss of ln 2 needs (the law's certification model)",
        )
    record["adapter"] = adapter
    if args.out:  # written first, so that a place that cannot be written fails with nothing printed
        write_json_atomic(args.out, record)
    if args.emit:
        emitted = emit_peft(law, int(record["rank"]), emit_layers, args.emit[1], record)
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
        # trained as memlaw train trains it: the law's budget, each answer's end token supervised
        # too, the learning rate searched around the law's
        training = law_config(law, args.data, fields=fields, rank=int(plan.rank), end_token=True, lr_search=True)
        record["train_command"] = train_command(training, depth=law_depth(law))
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


def train_command(config, *, depth: int | None = None) -> str:
    """The ``memlaw train`` line that trains exactly as ``config`` (a plan's verification) does:
    every setting of the law's budget that differs from train's own defaults (layers compared
    as indices from 0 in a ``depth``-layer model, modules in any order)."""
    from dataclasses import fields

    from memlaw.cli.train import TRAIN_DEFAULTS
    from memlaw.law.library import same_setting
    from memlaw.law.points import PROVENANCE
    from memlaw.probe.config import ProbeConfig

    words = ["memlaw", "train", shlex.quote(config.data), "--out", "ADAPTER_DIR"]
    defaults = {f.name: TRAIN_DEFAULTS.get(f.name, f.default) for f in fields(ProbeConfig)}
    for name in (*PROVENANCE, "rank", "fields"):
        value = getattr(config, name)
        if name == "data" or same_setting(name, value, defaults[name], depth):
            continue
        if isinstance(value, list):
            text = ",".join(map(str, value))
        elif value is None or isinstance(value, bool):
            text = str(value).lower()
        else:
            text = str(value)
        words += [f"--{name.replace('_', '-')}", shlex.quote(text)]
    return " ".join(words)


def peft_layers(law: MemoryLaw, adapter: dict, law_name: str) -> list[int] | str:
    """The layers (indices from 0, or "all") PEFT adapts for ``law``'s adapter, or why it cannot say."""
    if adapter["placement"] != "peft":
        raise MemlawInputError(f"--emit peft needs a law calibrated on PEFT LoRA; {law_name} is for the bypass")
    layers, depth = adapter["layer"], law_depth(law)
    if layers is None and depth is not None:  # memlaw's default layer: about 2/3 of the depth
        layers = round(DEFAULT_LAYER_FRACTION * depth)
    if layers == "all":
        return layers
    if layers is None or any(i < 0 for i in layer_list(layers)):
        raise MemlawInputError(
            f"{law_name} does not record its adapter's layers as indices from 0, which PEFT needs: recalibrate it"
        )
    return layer_list(layers)


def emit_peft(law: MemoryLaw, rank: int, layers: list[int] | str, folder: str, plan: dict) -> str:
    """Write PEFT's ``LoraConfig`` of ``law``'s adapter at ``rank`` on ``layers`` into ``folder``,
    with the law's training budget and the plan beside it (training.json): the adapter the plan is
    for, ready for PEFT, TRL or any trainer that takes a LoraConfig."""
    from memlaw.law.points import PROVENANCE
    from memlaw.law.verify import NOT_SETTINGS
    from memlaw.placements.peft_lora import PeftLoraConfig, lora_config

    provenance = getattr(law, "provenance_", {}) or {}
    alpha = provenance.get("lora_alpha")
    config = PeftLoraConfig(
        rank, layers, plan["adapter"]["target_modules"], rank if alpha is None else alpha,
        provenance.get("dropout") or 0.0,
    )  # fmt: skip
    budget = {name: provenance[name] for name in PROVENANCE if name in provenance and name not in NOT_SETTINGS}

    def fill(staging: Path) -> None:
        lora_config(config).save_pretrained(str(staging))
        write_json_atomic(staging / "training.json", {"training": budget, "plan": plan})

    write_dir_atomic(folder, fill)  # the whole folder or nothing
    return folder
