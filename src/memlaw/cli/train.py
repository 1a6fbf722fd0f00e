"""``memlaw train``: memorise a file into an adapter until recall is certified, then prove it.

By default it trains what ``memlaw plan`` plans for, with the calibrated law's own budget: a
PEFT LoRA on the MLP (gate, up and down projections) of the layer two below the top, SFT at
learning rate 0.03 until every answer token has p > 0.5 under teacher forcing (certified) or
the loss stops improving. Greedy decoding then verifies each item verbatim, the adapter is
saved (PEFT's format for PEFT placements: PeftModel.from_pretrained loads it and
merge_and_unload merges it), and the report names what is not recalled: the stubborn tokens
with their probabilities, and where decoding first leaves each failed item. --method memft-ot
trains with MemFT instead.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from memlaw.api.train import TRAIN_DEFAULTS, run_training
from memlaw.cli.common import config_from_args, given_settings, positive_int, quiet_libraries
from memlaw.config import add_dataclass_options
from memlaw.errors import MemlawInputError
from memlaw.io import check_input_file, check_outputs
from memlaw.probe.config import ProbeConfig

if TYPE_CHECKING:
    from memlaw.probe.result import ProbeResult

#: Stubborn tokens listed before "... and N more".
SHOWN_STUBBORN = 10


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("train", help="memorise a file until recall is certified", description=__doc__)
    parser.add_argument(
        "data_file", metavar="DATA", help="JSONL, CSV or Parquet records (see --fields), or a plain text file"
    )
    parser.add_argument("--out", required=True, help="new folder for the adapter, its settings and recall.json")
    parser.add_argument(
        "--into", metavar="DIR",
        help="add DATA to the adapter saved in DIR (by memlaw train --out): train what it holds plus DATA, held "
        "items costing nothing until a token slips below p 0.5, certify the union and save it in --out; the adapter's "
        "own settings apply (model, placement, rank, prompt format, learning rate)",
    )  # fmt: skip
    parser.add_argument(
        "--grow", type=positive_int, metavar="R",
        help="with --into: first raise the adapter's rank to R, keeping its function (new components start at zero)",
    )  # fmt: skip
    parser.add_argument("--law", help="with --into: law file for the room verdict (default: the adapter's own law)")
    parser.add_argument(
        "--track-record", help="with --into: SQLite file that records the room verdict and what the cycle measured "
        "(default: memlaw's own)",
    )  # fmt: skip
    parser.add_argument("--config", help="YAML file of settings (command-line options override it)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_dataclass_options(parser, ProbeConfig, defaults=TRAIN_DEFAULTS)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    quiet_libraries(quiet=args.quiet)  # first: tqdm reads its settings when first imported
    check_input_file(args.data_file, "no such data file (give a JSONL, CSV, Parquet or text file)")
    if args.data is not None:
        raise MemlawInputError("give the data file as the DATA argument, not --data")
    inputs = [("DATA", args.data_file), ("--config", args.config)]
    if args.into is not None:
        return run_cycle(args, inputs)
    if args.grow is not None or args.law is not None or args.track_record is not None:
        raise MemlawInputError("--grow, --law and --track-record apply to a cycle into a saved adapter: add --into DIR")
    args.data = args.data_file
    config = config_from_args(args, TRAIN_DEFAULTS)
    check_outputs(folders=[("--out", args.out)], inputs=inputs)
    result = run_training(config, out=args.out, progress=not args.quiet)
    print("\n".join(recall_report(result, config)))
    print(f"adapter: {args.out}")
    return 0


def run_cycle(args: argparse.Namespace, inputs: list) -> int:
    """``--into DIR``: the room verdict, then the cycle, then what it did."""
    from memlaw.api.train import run_cycle as train_cycle

    settings = given_settings(args)
    check_outputs(folders=[("--out", args.out)], inputs=[*inputs, ("--into", args.into)])
    result = train_cycle(
        args.into, args.data_file, out=args.out, grow=args.grow, law=args.law, track_record=args.track_record,
        progress=not args.quiet, loaded=None, settings=settings,
    )  # fmt: skip
    assert result.cycle is not None
    room = result.cycle["room"]
    if room.get("fits") is not None:
        verdict = "fits" if room["fits"] else f"does not fit (the law plans rank {room['union_rank']})"
        print(f"room verdict before training: {verdict}")
    config = ProbeConfig(**{k: v for k, v in result.config.items() if k in ProbeConfig.__dataclass_fields__})
    print("\n".join(recall_report(result, config)))
    print(cycle_line(result.cycle))
    print(f"adapter: {args.out}")
    return 0


def cycle_line(cycle: dict) -> str:
    grown = f", grown from rank {cycle['grown_from']}" if cycle["grown_from"] is not None else ""
    return (
        f"cycle {cycle['cycle']} (rank {cycle['rank']}{grown}): new items certified "
        f"{cycle['new_certified']}/{cycle['new_items']}; held items certified {cycle['held_certified']}/"
        f"{cycle['held_items']} ({cycle['slipped']} slipped during training, {cycle['restored']} of them restored); "
        f"{cycle['steps']} steps, {cycle['seconds']:.0f} s"
    )


def recall_report(result: ProbeResult, config: ProbeConfig) -> list[str]:
    items, exact = result.items, sum(item["exact_match"] for item in result.items)
    stop = {
        "converged": f"the loss stopped improving after {result.steps} steps, without certification",
        "max_steps": f"the cap of {result.steps} steps reached without certification",
    }.get(result.stop_reason, f"budget of {result.steps} steps spent without certification")
    if result.certified:
        stop = f"certified at step {result.certified_step}"
    if result.finish_step is not None:  # the SFT phase stopped improving there (--finish-stubborn)
        stop += f", finishing its stubborn tokens with memft-ot from step {result.finish_step}"
    ends = sum(item.get("end_tokens", 0) for item in items)
    ended = f" (and {ends} end token(s))" if ends else ""
    lines = [
        (
            f"memorised {len(items)} item(s), {result.length} answer tokens{ended}, into a "
            f"{result.placement['placement']} "
            f"rank-{result.placement['rank']} adapter ({result.trainable_params:,} parameters) "
            f"with {config.method}: {stop}"
        ),
        (
            f"loss {result.initial_loss:.4f} -> {result.final_loss:.4f} nats/token; "
            f"tokens with p > 0.5: {result.frac_above_half:.1%}"
        ),
        f"greedy recall: {exact}/{len(items)} items verbatim, token accuracy {result.token_accuracy:.1%}",
    ]
    if result.lr_choice is not None:
        tried = ", ".join(f"{lr:.3g} -> {loss:.3g}" for lr, loss in result.lr_choice["scores"])
        lines.append(
            f"learning rate {result.lr_choice['lr']:.3g}: the lowest loss after {result.lr_choice['steps']} steps "
            f"of the rates tried side by side ({tried} nats)"
        )
    if result.certified:
        lines.append("certified: every answer token has p > 0.5 under teacher forcing")
    stubborn = sorted(
        (item["token_probs"][position], item["key"], position)
        for item in items
        for position in item["stubborn_positions"]
    )
    if stubborn:
        lines.append(f"stubborn tokens (p <= 0.5), lowest first: {len(stubborn)}")
        lines += [f"  item {key!r} token {position}: p = {p:.3f}" for p, key, position in stubborn[:SHOWN_STUBBORN]]
        if len(stubborn) > SHOWN_STUBBORN:
            lines.append(f"  ... and {len(stubborn) - SHOWN_STUBBORN} more (all in recall.json)")
    failed = [item for item in items if item["divergence"] is not None]
    if failed:
        lines.append(f"where greedy decoding first diverges: {len(failed)} item(s)")
        for item in failed[:SHOWN_STUBBORN]:
            d = item["divergence"]
            lines.append(
                f"  item {item['key']!r} at token {d['position']}: after {d['before']!r} "
                f"expected {d['expected']!r}, decoded {d['decoded']!r}"
            )
    return lines
