"""Settings declared once, on a config dataclass; options from YAML files and ``--key value``.

Each field of a config dataclass is declared with ``setting(...)``: its default, its help text
and its roles (part of a cell's identity or engine-only, a store column, what the loaded model
or the data depends on, kept as a law's provenance). The CLI, the results store, the sweep
runner and the law read those roles from the dataclass, so a new setting is one line.

Precedence: the dataclass defaults, then the YAML file, then the command line. Every value
is type-checked against the field's annotation where it enters, so inner code can trust it.
"""

from __future__ import annotations

import argparse
import math
import types
import typing
from dataclasses import MISSING, field, fields
from pathlib import Path
from typing import Any

import yaml

from memlaw.errors import MemlawInputError

#: What the scope of a setting says: which loaded model, or which data, it determines.
SCOPES = ("model", "data")


def setting(
    default: Any = MISSING,
    *,
    help: str,
    key: bool = True,
    keyed_when_default: bool = True,
    column: bool = False,
    scope: str | None = None,
    stacks: bool = False,
    provenance: bool = False,
    default_factory: Any = MISSING,
) -> Any:
    """A dataclass field with its help text and roles.

    key: part of a cell's identity (False: engine-only, it changes speed, not measurements).
    keyed_when_default: False for settings added after stores existed; left out of the cell
        key while at their default, so cells stored before them keep their keys.
    column: also a column of the results store, to filter and export by.
    scope: "model" (which model is loaded) or "data" (what the data is, given the model).
    stacks: may differ between adapters trained stacked in one pass (rank, seed).
    provenance: recorded with a law fitted on such cells.
    """
    assert scope in (None, *SCOPES), scope
    roles = {
        "help": help, "key": key, "keyed_when_default": keyed_when_default, "column": column, "scope": scope,
        "stacks": stacks, "provenance": provenance,
    }  # fmt: skip
    return field(default=default, default_factory=default_factory, metadata=roles)


def settings_where(cls: type, **roles: Any) -> tuple[str, ...]:
    """Names of ``cls``'s settings whose roles equal all of ``roles``, in declaration order."""
    return tuple(f.name for f in fields(cls) if all(f.metadata.get(k) == v for k, v in roles.items()))


def add_dataclass_options(parser: argparse.ArgumentParser, cls: type, defaults: dict[str, Any] | None = None) -> None:
    """One ``--field-name`` option per setting; unset options stay ``None`` so YAML values survive.

    ``defaults`` are a command's own defaults, shown in its help instead of the dataclass's."""
    for f in fields(cls):
        flag = "--" + f.name.replace("_", "-")
        value = (defaults or {}).get(f.name, f.default)
        default = "" if value is MISSING else f" (default: {value})"
        parser.add_argument(
            flag, dest=f.name, default=None, metavar=f.name.upper(), help=f.metadata.get("help", "") + default
        )


def read_yaml(path: str | Path) -> dict[str, Any]:
    source = Path(path)
    if not source.is_file():
        raise MemlawInputError(f"config file not found: {source}")
    try:
        values = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise MemlawInputError(f"{source}{where}: not valid YAML ({getattr(err, 'problem', err)})") from err
    if not isinstance(values, dict):
        raise MemlawInputError(f"{source}: expected a mapping of settings, got {type(values).__name__}")
    return {str(k).replace("-", "_"): v for k, v in values.items()}


def build_config(cls: type, yaml_values: dict[str, Any], cli_values: dict[str, str | None]) -> Any:
    """Merge, type-check and construct ``cls``; unknown keys are an error, not ignored."""
    return cls(**typed_settings(cls, yaml_values, cli_values))


def typed_settings(cls: type, yaml_values: dict[str, Any], cli_values: dict[str, str | None]) -> dict[str, Any]:
    """The settings given (YAML values, then the flags set), merged and type-checked against ``cls``."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(yaml_values) - known)
    if unknown:
        raise MemlawInputError(f"unknown setting '{unknown[0]}' (known: {', '.join(sorted(known))})")
    values = {k: check_value(k, v, hints[k]) for k, v in yaml_values.items()}
    values.update({k: parse_text(k, v, hints[k]) for k, v in cli_values.items() if v is not None})
    return values


def _options(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def check_value(name: str, value: Any, annotation: Any) -> Any:
    """A YAML value, checked against the field's type (ints are accepted where floats are)."""
    for option in _options(annotation):
        if option is type(None) and value is None:
            return None
        if option is bool and isinstance(value, bool):
            return value
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return _finite(name, float(value))
        if option is str and isinstance(value, str):
            return value
        if typing.get_origin(option) is dict and isinstance(value, dict):
            return value  # checked by whoever consumes the mapping (e.g. an objective's options)
        if typing.get_origin(option) is list and isinstance(value, list):
            (item_type,) = typing.get_args(option)
            return [check_value(name, item, item_type) for item in value]
    raise MemlawInputError(f"setting '{name}' must be {_describe(annotation)}, got {value!r}")


def parse_text(name: str, text: str, annotation: Any) -> Any:
    """A command-line value: lists are comma-separated, 'none' clears an optional setting."""
    options = _options(annotation)
    if type(None) in options and text.lower() in ("none", "null"):
        return None
    for option in options:
        if option is bool:
            if text.lower() in ("true", "yes", "1", "false", "no", "0"):
                return text.lower() in ("true", "yes", "1")
        elif option is int:
            try:
                return int(text)
            except ValueError:
                continue
        elif option is float:
            try:
                number = float(text)
            except ValueError:
                continue
            return _finite(name, number)
        elif typing.get_origin(option) is dict:
            try:
                mapping = yaml.safe_load(text)
            except yaml.YAMLError:
                mapping = None
            if isinstance(mapping, dict):
                return mapping
        elif typing.get_origin(option) is list and "," in text:
            (item_type,) = typing.get_args(option)
            return [parse_text(name, part.strip(), item_type) for part in text.split(",")]
    if str in options:
        return text
    for option in options:  # a single-element list given without a comma
        if typing.get_origin(option) is list:
            (item_type,) = typing.get_args(option)
            return [parse_text(name, text, item_type)]
    raise MemlawInputError(f"--{name.replace('_', '-')} must be {_describe(annotation)}, got '{text}'")


def _finite(name: str, number: float) -> float:
    """NaN and infinities reach no arithmetic: every float setting is a finite number."""
    if not math.isfinite(number):
        raise MemlawInputError(f"setting '{name}' must be a finite number, got {number}")
    return number


def _describe(annotation: Any) -> str:
    names = []
    for option in _options(annotation):
        if option is type(None):
            names.append("none")
        elif typing.get_origin(option) is list:
            names.append(f"a list of {_describe(typing.get_args(option)[0])}")
        elif typing.get_origin(option) is dict:
            names.append("a mapping such as '{window: 80, decay: 20}'")
        else:
            names.append(
                {int: "an integer", float: "a number", str: "text", bool: "true or false"}.get(option, str(option))
            )
    return " or ".join(names)
