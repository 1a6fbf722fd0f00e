"""Where an adapter sits in the model: one placement = a config + the adapter it attaches."""

from __future__ import annotations

from pathlib import Path

from peft import PeftModel
from transformers import PreTrainedModel

from memlaw.placements.base import Adapter, read_config
from memlaw.placements.bypass import BypassAdapter, BypassConfig
from memlaw.placements.peft_lora import PeftAdapter, PeftLoraConfig

PLACEMENTS = ("bypass", "peft")


def load_adapter(model: PreTrainedModel, directory: str | Path) -> Adapter:
    """Attach an adapter saved by memlaw (bypass) or by PEFT to ``model``."""
    config = read_config(directory)
    if "peft_type" in config:
        peft_model = PeftModel.from_pretrained(model, str(directory))
        saved = peft_model.peft_config["default"]
        layers = saved.layers_to_transform
        return PeftAdapter(
            peft_model,
            PeftLoraConfig(
                rank=saved.r,
                layers="all" if layers is None else list(layers if isinstance(layers, list) else [layers]),
                target_modules=sorted(saved.target_modules),
                lora_alpha=saved.lora_alpha,
                dropout=saved.lora_dropout,
            ),
        )
    return BypassAdapter.from_pretrained(model, directory, config)


__all__ = ["PLACEMENTS", "Adapter", "BypassAdapter", "BypassConfig", "PeftAdapter", "PeftLoraConfig", "load_adapter"]
