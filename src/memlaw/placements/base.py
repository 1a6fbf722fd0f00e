"""What every placement provides: a trainable adapter attached to a frozen causal LM."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
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
    #: Adapters trained side by side in one pass (``engine.stacked``); 1 for an ordinary adapter.
    copies: int = 1

    @property
    @abstractmethod
    def first_layer(self) -> int:
        """Lowest decoder layer the adapter changes: everything below it is a frozen prefix."""

    @abstractmethod
    def parameters(self) -> list[nn.Parameter]:
        """The trainable tensors (and nothing of the frozen base model)."""

    @property
    def trainable_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    @abstractmethod
    def stochastic(self) -> bool:
        """True when training forward passes are noisy (dropout), so they are no clean measurement."""

    def clip_grad_norm_(self, max_norm: float) -> None:
        """Clip the gradient of each copy to ``max_norm`` (of the one adapter, here)."""
        torch.nn.utils.clip_grad_norm_(self.parameters(), max_norm)

    def snapshot_copies(self, copies: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Saved values of the given copies, for ``restore_copies`` after an optimizer step."""
        return [(p, p.detach().clone()) for p in self.parameters()] if copies else []

    def restore_copies(self, snapshot: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        with torch.no_grad():
            for target, saved in snapshot:
                target.copy_(saved)

    @abstractmethod
    @contextmanager
    def disabled(self) -> Iterator[None]:
        """Within this block ``model`` behaves as the base model (for L_init)."""

    @abstractmethod
    def train(self, mode: bool = True) -> None:
        """Switch the adapter's own dropout; the base model always stays in eval mode."""

    @abstractmethod
    def save_pretrained(self, directory: str | Path, copy: int = 0) -> None:
        """Write the adapter (copy ``copy`` of a stack) so that ``load_adapter`` (or PEFT) can attach it."""

    @abstractmethod
    def remove(self) -> PreTrainedModel:
        """Detach the adapter and give back the untouched base model."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Everything that defines the placement, for results and saved files."""

    def copy_describe(self, copy: int) -> dict[str, Any]:
        """``describe`` of one copy; an ordinary adapter is its own only copy."""
        return self.describe()

    def copy_trainable_params(self, copy: int) -> int:
        return self.trainable_params


def read_config(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise MemlawInputError(f"{directory} holds no adapter ({CONFIG_FILE} is missing)")
    return json.loads(path.read_text())
