"""The training methods by name: ``sft``, ``memft-ot``, ``memft-sw``, each an ``Objective`` class."""

from __future__ import annotations

import typing
from dataclasses import MISSING, Field, fields, is_dataclass

from memlaw.config import check_value
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
    hints, defaults = typing.get_type_hints(cls), {f.name: _default(f) for f in fields(cls)} if known else {}
    for key, value in options.items():  # types first: a wrong one would fail deep inside, unexplained
        try:
            options[key] = check_value(key, value, hints[key])
        except MemlawInputError as err:
            raise MemlawInputError(
                f"method {name}: {err}, e.g. method_options= '{{{key}: {defaults[key]}}}' (docs/memft.md)"
            ) from err
    try:
        return cls(**options)
    except TypeError as err:
        raise MemlawInputError(f"method {name}: {err}") from err


def _default(option: Field) -> object:
    return option.default_factory() if option.default is MISSING else option.default
