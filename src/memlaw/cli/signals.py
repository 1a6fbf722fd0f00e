"""Ctrl-C and SIGTERM (docker stop, a batch scheduler, timeout) end every command the same way:
as a ``KeyboardInterrupt`` where the work is, so that what is finished is kept, what is not is
not written, and the exit status is the shells' (128 + the signal's number)."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be."""


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """While open, SIGTERM raises ``Terminated`` as Ctrl-C raises ``KeyboardInterrupt``."""

    def stop(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stopped(stop: KeyboardInterrupt) -> tuple[str, int]:
    """(what happened, in a word; the exit status) for Ctrl-C or SIGTERM."""
    return ("terminated", EXIT_TERMINATED) if isinstance(stop, Terminated) else ("interrupted", EXIT_INTERRUPTED)


def say_stopped(message: str) -> None:
    """Print the one line a stopped command ends with, from the start of the line: the signal
    may land while a progress bar is half drawn, and the message must not be glued onto it."""
    # on a terminal, also erase what the bar left; in a log, a carriage return is what tqdm writes too
    start = "\r\x1b[2K" if sys.stderr.isatty() else "\r"
    print(start + message, file=sys.stderr, flush=True)
