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
from memlaw.cli.common import config_from_args, quiet_libraries
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
    parser.add_argument("--config", help="YAML file of settings (command-line options override it)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_dataclass_options(parser, ProbeConfig, defaults=TRAIN_DEFAULTS)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    quiet_libraries(quiet=args.quiet)  # first: tqdm reads its settings when first imported
    check_input_file(args.data_file, "no such data file (give a JSONL, CSV, Parquet or text file)")
    if args.data is not None:
        raise MemlawInputError("give the data file as the DATA argument, not --data")
    args.data = args.data_file
    config = config_from_args(args, TRAIN_DEFAULTS)
    check_outputs(folders=[("--out", args.out)], inputs=[("DATA", args.data_file), ("--config", args.config)])
    result = run_training(config, out=args.out, progress=not args.quiet)
    print("\n".join(recall_report(result, config)))
    print(f"adapter: {args.out}")
    return 0


def recall_report(result: ProbeResult, config: ProbeConfig) -> list[str]:
    items, exact = result.items, sum(item["exact_match"] for item in result.items)
    stop = {
        "converged": f"the loss stopped improving after {result.steps} steps, without certification",
        "max_steps": f"the cap of {result.steps} steps reached without certification",
    }.get(result.stop_reason, f"budget of {result.steps} steps spent without certification")
    if result.certified:
        stop = f"certified at step {result.certified_step}"
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
