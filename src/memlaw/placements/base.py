"""What every placement provides: a trainable adapter attached to a frozen causal LM."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch import nn
from transformers import PreTrainedModel

from memlaw.errors import MemlawInputError

#: File holding an adapter's configuration (the name PEFT uses, so both kinds look alike).
CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"


class Adapter(ABC):
    """An adapter attached to ``model``; forward passes through ``model`` use it while enabled."""

    #: Placement name recorded in results ("bypass", "peft").
    kind: str
    model: PreTrainedModel

    @abstractmethod
    def parameters(self) -> list[nn.Parameter]:
        """The trainable tensors (and nothing of the frozen base model)."""

    @property
    def trainable_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @abstractmethod
    @contextmanager
    def disabled(self) -> Iterator[None]:
        """Within this block ``model`` behaves as the base model (for L_init)."""

    @abstractmethod
    def train(self, mode: bool = True) -> None:
        """Switch the adapter's own dropout; the base model always stays in eval mode."""

    @abstractmethod
    def save_pretrained(self, directory: str | Path) -> None:
        """Write the adapter so that ``load_adapter`` (or PEFT) can attach it again."""

    @abstractmethod
    def remove(self) -> PreTrainedModel:
        """Detach the adapter and give back the untouched base model."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Everything that defines the placement, for results and saved files."""


def read_config(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise MemlawInputError(f"{directory} holds no adapter ({CONFIG_FILE} is missing)")
    return json.loads(path.read_text())
