"""Standard PEFT LoRA on chosen modules and layers: the adapters people actually train.

Saved in PEFT's own format, so ``PeftModel.from_pretrained`` loads what memlaw trained.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn
from transformers import PreTrainedModel

from memlaw.errors import MemlawInputError
from memlaw.models.parts import check_layer, default_layer
from memlaw.placements.base import Adapter

#: The MLP projections of Llama-style blocks: the closest PEFT analogue of the paper's bypass.
DEFAULT_TARGET_MODULES = ("gate_proj", "up_proj", "down_proj")


@dataclass
class PeftLoraConfig:
    """LoRA of rank ``rank`` on ``target_modules`` of ``layers`` (default: the 2/3-depth layer).

    ``layers`` = "all" adapts every layer. ``lora_alpha`` defaults to the rank, a scaling of 1,
    so that rank alone sets capacity, as in the paper's unscaled bypass.
    """

    rank: int
    layers: list[int] | str | None = None
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGET_MODULES))
    lora_alpha: float | None = None
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.rank <= 0:
            raise MemlawInputError(f"rank must be a positive integer, got {self.rank}")
        if not self.target_modules:
            raise MemlawInputError("target_modules is empty: name at least one module (e.g. gate_proj)")
        if not 0.0 <= self.dropout < 1.0:
            raise MemlawInputError(f"dropout must be within [0, 1), got {self.dropout}")
        if isinstance(self.layers, str) and self.layers != "all":
            raise MemlawInputError(f"layers must be a list of layer indices or 'all', got '{self.layers}'")

    def attach(self, model: PreTrainedModel, *, seed: int = 0) -> PeftAdapter:
        return PeftAdapter(model, self, seed=seed)


class PeftAdapter(Adapter):
    kind = "peft"

    def __init__(self, model: PreTrainedModel | PeftModel, config: PeftLoraConfig, *, seed: int = 0):
        base = model.get_base_model() if isinstance(model, PeftModel) else model
        layers = config.layers
        if layers is None:
            layers = [default_layer(base)]
        elif layers != "all":
            layers = [check_layer(base, int(i)) for i in layers]
        self.config = PeftLoraConfig(
            config.rank, layers, list(config.target_modules), config.lora_alpha, config.dropout
        )
        if isinstance(model, PeftModel):  # loaded with PeftModel.from_pretrained
            self.peft_model = model
        else:
            lora = LoraConfig(
                r=config.rank,
                lora_alpha=config.rank if config.lora_alpha is None else config.lora_alpha,
                lora_dropout=config.dropout,
                target_modules=list(config.target_modules),
                layers_to_transform=None if layers == "all" else layers,
                bias="none",
                task_type="CAUSAL_LM",
            )
            with torch.random.fork_rng(devices=[]):  # PEFT draws its init from the global RNG
                torch.manual_seed(seed)
                try:
                    self.peft_model = get_peft_model(model, lora)
                except ValueError as err:
                    raise MemlawInputError(f"PEFT cannot place LoRA here: {str(err).splitlines()[0]}") from err
        self.model = self.peft_model.get_base_model()
        self.train(False)

    @property
    def first_layer(self) -> int:
        return 0 if self.config.layers == "all" else min(self.config.layers)

    @property
    def stochastic(self) -> bool:
        return self.config.dropout > 0

    def parameters(self) -> list[nn.Parameter]:
        return [p for p in self.peft_model.parameters() if p.requires_grad]

    @contextmanager
    def disabled(self) -> Iterator[None]:
        with self.peft_model.disable_adapter():
            yield

    def train(self, mode: bool = True) -> None:
        # Only LoRA's own dropout follows ``mode``; the frozen base model stays in eval mode.
        for name, module in self.peft_model.named_modules():
            if name.split(".")[-1] == "lora_dropout":
                module.train(mode)

    def save_pretrained(self, directory: str | Path, copy: int = 0) -> None:
        self.peft_model.save_pretrained(str(directory))

    def remove(self) -> PreTrainedModel:
        return self.peft_model.unload()

    def describe(self) -> dict[str, Any]:
        return {"placement": self.kind, **asdict(self.config)}
