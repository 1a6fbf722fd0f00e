"""``memlaw <command>``: user mistakes end as one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import sys
import typing

from memlaw.cli.signals import say_stopped, stop_on_sigterm, stopped
from memlaw.errors import MemlawInputError, as_flags

EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (what is wrong, where to look) and exit 2."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from memlaw.cli import ask, calibrate, fit, plan, probe, report, room, sweep, train

    parser = OneLineParser(prog="memlaw", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    probe.register(commands)
    train.register(commands)
    sweep.register(commands)
    fit.register(commands)
    calibrate.register(commands)
    plan.register(commands)
    report.register(commands)
    room.register(commands)
    ask.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with stop_on_sigterm():
            return int(args.run(args) or 0)
    except MemlawInputError as err:
        print(f"memlaw {args.command}: error: {as_flags(str(err))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as stop:  # commands that keep finished work say so themselves
        what, status = stopped(stop)
        say_stopped(f"memlaw {args.command}: {what}; nothing was written")
        return status


if __name__ == "__main__":
    sys.exit(main())
