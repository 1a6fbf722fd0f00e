"""``memlaw probe``: train one adapter on some content and report what it remembers."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from memlaw.cli.common import config_from_args, quiet_libraries
from memlaw.config import add_dataclass_options
from memlaw.io import check_outputs
from memlaw.probe.config import ProbeConfig

if TYPE_CHECKING:
    pass


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("probe", help="train one adapter and measure what it remembers", description=__doc__)
    parser.add_argument("--config", help="YAML file of probe settings (command-line options override it)")
    parser.add_argument("--out", help="write the JSON result here (schema: docs/probe-result.md)")
    parser.add_argument("--save", help="save the trained adapter in this new folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_dataclass_options(parser, ProbeConfig)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    quiet_libraries(quiet=args.quiet)  # first: tqdm reads its settings when first imported
    from memlaw.probe.run import run_probe

    config = config_from_args(args)
    inputs = [("--data", config.data), ("--config", args.config)]
    check_outputs(files=[("--out", args.out)], folders=[("--save", args.save)], inputs=inputs)
    result = run_probe(config, progress=not args.quiet)
    print(result.summary())
    if args.out:
        result.save_json(args.out)
        print(f"result: {args.out}")
    if args.save is not None:
        from memlaw.memory import save_trained

        save_trained(result, args.save, config)
        print(f"adapter: {args.save}")
    return 0
