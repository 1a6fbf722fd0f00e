"""Where laws live: the calibrated laws shipped with memlaw, and the ones ``memlaw calibrate``
writes. ``memlaw plan --model M`` looks in the user's folder first, then in the package.

The user's folder is ``$MEMLAW_HOME/laws`` (default ``~/.local/share/memlaw/laws``, or under
``$XDG_DATA_HOME``); the track record of verified plans lives beside it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from importlib import resources
from pathlib import Path

from memlaw.errors import MemlawInputError
from memlaw.io import read_user_text
from memlaw.law.fit import MemoryLaw
from memlaw.law.state import AdapterSpec

#: Package holding the shipped laws.
PACKAGED_LAWS = "memlaw.laws"


def memlaw_home() -> Path:
    """memlaw's own data folder: calibrated laws and the track record of verified plans."""
    if os.environ.get("MEMLAW_HOME"):
        return Path(os.environ["MEMLAW_HOME"])
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data) / "memlaw"


def law_file_name(model: str, placement: str = "bypass") -> str:
    """The file name of a model's law for ``placement``: the model's name (hub id, folder or GGUF
    path) made file-safe; a PEFT law adds ``.peft`` (``smollm2-135m-instruct.peft.json``)."""
    slug = re.sub(r"[^a-z0-9._-]+", "--", model.lower()).strip("-.") or "model"
    return f"{slug}.json" if placement == "bypass" else f"{slug}.{placement}.json"


def user_law_path(model: str, placement: str = "bypass") -> Path:
    return memlaw_home() / "laws" / law_file_name(model, placement)


def find_law(model: str, placement: str = "bypass") -> tuple[MemoryLaw, str]:
    """The law calibrated for ``model`` and ``placement`` (the user's own first, then the packaged
    one) and where it came from."""
    user = user_law_path(model, placement)
    if user.is_file():
        return load_law(user), str(user)
    name = law_file_name(model, placement)
    packaged = resources.files(PACKAGED_LAWS).joinpath(name)
    if packaged.is_file():
        return law_from_text(packaged.read_text(encoding="utf-8"), f"packaged law {name}"), (
            f"the {placement} law packaged with memlaw for {model}"
        )
    raise MemlawInputError(
        f"no calibrated {placement} law for model {model!r}: run memlaw calibrate --model {model} "
        f"--placement {placement}, or pass law= FILE (written by memlaw fit --out)"
    )


def load_law(path: str | Path) -> MemoryLaw:
    text = read_user_text(path, "no such law file (write one with memlaw fit --out)")
    return law_from_text(text, str(path))


def law_from_text(text: str, where: str) -> MemoryLaw:
    try:
        return MemoryLaw.from_dict(json.loads(text))
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise MemlawInputError(f"{where} is not a law written by memlaw fit ({type(err).__name__}: {err})") from err


def law_adapter(law: MemoryLaw) -> AdapterSpec:
    """The adapter ``law`` was calibrated on, layers counted from 0 where the law knows the model's depth."""
    provenance = law.provenance_
    return AdapterSpec.of(
        provenance.placement, _layers(provenance.get("layer"), law.reference_.layers), provenance.get("target_modules")
    )


def check_law_adapter(
    law: MemoryLaw,
    where: str,
    *,
    placement: str | None = None,
    target_modules: list[str] | None = None,
    layer: str | None = None,
) -> AdapterSpec:
    """``law``'s adapter, after checking it is the one the user names: a law holds only for the
    adapter it was calibrated on, so a plan for another is refused with how to calibrate one."""
    adapter = law_adapter(law)
    depth = law.reference_.layers
    placement = placement or adapter.placement
    if placement == "bypass" and target_modules is not None:
        raise MemlawInputError("target_modules= names PEFT modules: the bypass has none (drop it or use peft)")
    modules = target_modules or (adapter.target_modules if placement == adapter.placement else None)
    asked_layer = adapter.layer
    if layer is not None:
        asked_layer = _parse_layer(layer)
        indices = [] if asked_layer == "all" else layer_list(asked_layer)
        if depth is None and any(i < 0 for i in indices):
            raise MemlawInputError(f"layer= {layer}: {where} does not record the model's depth: count from 0")
        if depth is not None and not all(-depth <= i < depth for i in indices):
            raise MemlawInputError(f"layer= {layer} is out of range: the law's model has layers 0..{depth - 1}")
        asked_layer = _layers(asked_layer, depth)
    asked = AdapterSpec.of(placement, asked_layer, modules)
    if asked != adapter:
        model = law.provenance_.model or "M"
        words = ["memlaw", "calibrate", "--model", model, "--placement", placement]
        if target_modules is not None:
            words += ["--set", f"target_modules=[{','.join(target_modules)}]"]
        if layer is not None:
            words += ["--set", f"layer={layer}" if "," not in layer else f"layer=[{layer}]"]
        words += ["--store", "NEW.db", "--out", "LAW.json"]
        raise MemlawInputError(
            f"{where} was calibrated on {adapter.describe()}, not on {asked.describe()}: calibrate a "
            f"law for that adapter ({shlex.join(words)}) and plan with law= LAW.json"
        )
    return adapter


def layer_list(layer) -> list[int]:
    """A layer setting that is one index or several, as a list."""
    return [layer] if isinstance(layer, int) else list(layer)


def _parse_layer(text: str) -> int | list[int] | str:
    """A --layer value: an index, a comma list of them, or 'all'."""
    if text.strip() == "all":
        return "all"
    try:
        layers = [int(part) for part in text.split(",")]
    except ValueError:
        raise MemlawInputError(f"layer= {text}: give a layer index, a comma list of them, or 'all'") from None
    return layers[0] if len(layers) == 1 else layers


def _layers(layer, depth: int | None):
    """``layer`` (an index, a list or 'all') as sorted indices from 0, counting negative ones from
    the top of a ``depth``-layer model; a lone layer as an int."""
    if layer is None or layer == "all":
        return layer
    layers = layer_list(layer)
    if depth is not None:
        layers = [index % depth if -depth <= index < 0 else index for index in layers]
    layers = sorted(set(layers))
    return layers[0] if len(layers) == 1 else layers


def same_setting(name: str, value, other, depth: int | None) -> bool:
    """Whether two values of probe setting ``name`` train the same adapter: layers as indices from
    0 (a negative one counted from the top of a ``depth``-layer model), modules in any order."""
    if name == "layer":
        return _layers(value, depth) == _layers(other, depth)
    if name == "target_modules" and value is not None and other is not None:
        return sorted(value) == sorted(other)
    return value == other
