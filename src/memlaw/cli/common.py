"""What several commands share: probe settings from flags and YAML, new output folders, quiet libraries.

Nothing here imports torch: the light commands (fit, plan, results) build their parsers next to
these and must start in a fraction of a second.
"""

from __future__ import annotations

import argparse
import math
import os
import warnings

from memlaw.config import read_yaml, typed_settings
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
    return ProbeConfig(**{**(defaults or {}), **given_settings(args)})


def given_settings(args: argparse.Namespace) -> dict:
    """The probe settings the user gave, typed: --config YAML, then the flags set; no defaults."""
    cli_values = {k: v for k, v in vars(args).items() if k in ProbeConfig.__dataclass_fields__}
    return typed_settings(ProbeConfig, read_yaml(args.config) if args.config else {}, cli_values)


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
