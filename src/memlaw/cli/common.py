"""What several commands share: probe settings from flags and YAML, new output folders, quiet libraries.

Nothing here imports torch: the light commands (fit, plan, results) build their parsers next to
these and must start in a fraction of a second.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path

from memlaw.config import build_config, read_yaml
from memlaw.errors import MemlawInputError
from memlaw.probe.config import ProbeConfig


def quiet_libraries(*, quiet: bool = False) -> None:
    """transformers' advisories and loading bars would bury our output; real errors still surface.
    ``quiet`` (the commands' --quiet) also silences the bars transformers draws with tqdm
    directly, such as the GGUF conversion's."""
    if quiet:
        # tqdm reads its TQDM_* settings when it is first imported, which importing transformers does
        os.environ["TQDM_DISABLE"] = "1"
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    # PEFT asks transformers a deprecated question, and looks for a config.json that a GGUF
    # model's folder does not have: neither concerns the user
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    warnings.filterwarnings("ignore", message="Could not find a config file in", category=UserWarning)


def config_from_args(args: argparse.Namespace, defaults: dict | None = None) -> ProbeConfig:
    """Dataclass defaults, then ``defaults`` (a command's own), then --config YAML, then flags."""
    cli_values = {k: v for k, v in vars(args).items() if k in ProbeConfig.__dataclass_fields__}
    values = {**(defaults or {}), **(read_yaml(args.config) if args.config else {})}
    return build_config(ProbeConfig, values, cli_values)


Place = tuple[str, "str | Path | None"]


def check_outputs(*, files: Iterable[Place] = (), folders: Iterable[Place] = (), inputs: Iterable[Place] = ()) -> None:
    """Every output of a command checked before any work, by one rule.

    ``files`` and ``folders`` are (flag, path) pairs, None where the flag was not given. An
    output file may exist: it is replaced whole, keeping its permissions, and stderr says so.
    An output folder must be new or empty, so nothing a user kept is replaced. No output may be
    the place of another, lie inside an output folder, or be one of the command's ``inputs``.
    """
    files = [(flag, Path(path)) for flag, path in files if path is not None]
    folders = [(flag, Path(path)) for flag, path in folders if path is not None]
    for flag, folder in folders:
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise MemlawInputError(f"{flag} {folder} already exists and is not an empty folder: choose a new folder")
        _check_writable(folder, flag)
    for flag, target in files:
        if target.is_dir():
            raise MemlawInputError(f"{flag} {target} is a folder: give a file name")
        _check_writable(target, flag)
    outputs = [(flag, path.resolve()) for flag, path in (*files, *folders)]
    for index, (flag, place) in enumerate(outputs):
        for other_flag, other in outputs[index + 1 :]:
            if place == other:
                raise MemlawInputError(f"{flag} and {other_flag} name the same place ({place}): give them apart")
        for other_flag, other in outputs:
            if other in place.parents:
                raise MemlawInputError(f"{flag} {place} lies inside {other_flag} {other}: give outputs apart")
        for input_flag, source in inputs:
            if source is not None and Path(source).resolve() == place:
                raise MemlawInputError(f"{flag} {place} is also {input_flag}, which it would overwrite: give another")
    for flag, target in files:
        if target.exists():
            print(f"memlaw: {flag} {target} exists: it will be replaced", file=sys.stderr)


def _check_writable(target: Path, flag: str) -> None:
    """Refuse an output where nothing can be written, trying a file in its nearest existing
    folder: permission bits do not tell (root, read-only or virtual file systems)."""
    parent = next((place for place in (target.parent, *target.parent.parents) if place.exists()), Path("."))
    try:
        descriptor, probe = tempfile.mkstemp(dir=parent, prefix=".memlaw-check-")
    except OSError:
        raise MemlawInputError(f"{flag} {target}: cannot write in {parent}") from None
    os.close(descriptor)
    os.unlink(probe)


def positive_number(text: str) -> float:
    """An argparse type: a finite number > 0 (NaN, infinities and 0 are usage errors, exit 2)."""
    number = finite_number(text)
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return number


def non_negative_number(text: str) -> float:
    """An argparse type: a finite number ≥ 0."""
    number = finite_number(text)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0, got {text}")
    return number


def _whole_number(minimum: int):
    """An argparse type: a whole number ≥ ``minimum``."""

    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be ≥ {minimum}, got {text}")
        return number

    return parse


non_negative_int = _whole_number(0)
positive_int = _whole_number(1)


def finite_number(text: str) -> float:
    """An argparse type: a finite real number."""
    try:
        number = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return number
