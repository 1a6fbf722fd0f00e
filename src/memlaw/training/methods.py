"""The training methods by name: ``sft``, ``memft-ot``, ``memft-sw``, each an ``Objective`` class."""

from __future__ import annotations

from dataclasses import fields, is_dataclass

from memlaw.errors import MemlawInputError
from memlaw.training.memft import OnlyThreshold, SlidingWindow
from memlaw.training.objectives import SFT, Objective

METHODS: dict[str, type[Objective]] = {"sft": SFT, "memft-ot": OnlyThreshold, "memft-sw": SlidingWindow}


def make_objective(name: str, options: dict | None = None) -> Objective:
    """The objective ``name`` with its documented ``options`` (checked: unknown keys and bad values are errors)."""
    if name not in METHODS:
        raise MemlawInputError(f"unknown method '{name}': use one of {', '.join(METHODS)}")
    cls, options = METHODS[name], dict(options or {})
    known = {f.name for f in fields(cls)} if is_dataclass(cls) else set()
    unknown = sorted(set(options) - known)
    if unknown:
        hint = f"known: {', '.join(sorted(known))}" if known else f"{name} takes no options"
        raise MemlawInputError(f"unknown option '{unknown[0]}' for method {name} ({hint})")
    try:
        return cls(**options)
    except TypeError as err:
        raise MemlawInputError(f"method {name}: {err}") from err
