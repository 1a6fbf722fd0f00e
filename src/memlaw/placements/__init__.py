"""Where an adapter sits in the model. Each placement is one registry entry: its config (built
from probe settings), ``stack`` (attach K ≥ 1 copies; one adapter is K = 1) and ``load``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peft import PeftModel
from safetensors import SafetensorError
from transformers import PreTrainedModel

from memlaw.errors import MemlawInputError
from memlaw.placements.base import Adapter, ResidualAdapter, read_config
from memlaw.placements.bypass import BypassAdapter, BypassConfig, load_bypass
from memlaw.placements.peft_lora import PeftAdapter, PeftLoraConfig


@dataclass(frozen=True)
class Placement:
    #: Builds the placement's config from probe settings (rank, layer, init, dropout, ...).
    configure: Callable[..., Any]
    #: ``stack(model, configs, seeds)``: K copies, one per config, in one adapter.
    stack: Callable[[PreTrainedModel, list[Any], list[int]], Adapter]
    #: Whether a saved ``adapter_config.json`` is this placement's.
    saved_here: Callable[[dict[str, Any]], bool]
    #: ``load(model, directory, saved_config)``: attach a saved adapter.
    load: Callable[[PreTrainedModel, Path, dict[str, Any]], Adapter]


def _load_peft(model: PreTrainedModel, directory: Path, saved: dict[str, Any]) -> PeftAdapter:
    peft_model = PeftModel.from_pretrained(model, str(directory))
    lora = peft_model.peft_config["default"]
    layers = lora.layers_to_transform
    config = PeftLoraConfig(
        rank=lora.r,
        layers="all" if layers is None else list(layers if isinstance(layers, list) else [layers]),
        target_modules=sorted(lora.target_modules),
        lora_alpha=lora.lora_alpha,
        dropout=lora.lora_dropout,
    )
    return PeftAdapter(peft_model, [config], [0])


PLACEMENTS: dict[str, Placement] = {
    "bypass": Placement(
        BypassConfig.from_settings, BypassAdapter, lambda saved: saved.get("placement") == "bypass", load_bypass
    ),
    "peft": Placement(PeftLoraConfig.from_settings, PeftAdapter, lambda saved: "peft_type" in saved, _load_peft),
}


#: What loading truncated or mangled weights raises, or weights of another shape than the config says.
DAMAGED_WEIGHTS = (SafetensorError, OSError, RuntimeError, ValueError, KeyError)


def damaged_weights(directory: str | Path, err: Exception) -> MemlawInputError:
    """The one line for weights that do not load; memlaw's own errors (a shape that does not fit) as they are."""
    if isinstance(err, MemlawInputError):
        return err
    reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return MemlawInputError(
        f"{directory}: the adapter's weights cannot be loaded ({reason}): the folder is damaged or incomplete; "
        "train the adapter again"
    )


def load_adapter(model: PreTrainedModel, directory: str | Path) -> Adapter:
    """Attach an adapter saved by memlaw (any placement) or by PEFT to ``model``."""
    saved = read_config(directory)
    for placement in PLACEMENTS.values():
        if placement.saved_here(saved):
            try:
                return placement.load(model, Path(directory), saved)
            except DAMAGED_WEIGHTS as err:
                raise damaged_weights(directory, err) from err
    raise MemlawInputError(f"{directory} holds an adapter memlaw does not know ({', '.join(PLACEMENTS)} are known)")


__all__ = [
    "DAMAGED_WEIGHTS",
    "PLACEMENTS",
    "Adapter",
    "BypassAdapter",
    "BypassConfig",
    "PeftAdapter",
    "PeftLoraConfig",
    "Placement",
    "ResidualAdapter",
    "damaged_weights",
    "load_adapter",
]
