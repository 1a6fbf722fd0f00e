"""What every placement provides: K ≥ 1 trainable adapter copies attached to a frozen causal LM."""

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
    """``copies`` adapters attached to ``model``; forward passes through ``model`` use them while enabled.

    With K > 1 copies every batch is K equal blocks of rows and copy j acts on block j only, so
    K adapters train in one pass over the shared frozen weights. Each copy owns its own
    parameters (``copy_parameters``): an optimizer then keeps separate state per copy, and a copy
    whose gradient is dropped for a step is left exactly as it would be alone.
    """

    #: Placement name recorded in results ("bypass", "peft").
    kind: str
    model: PreTrainedModel
    copies: int = 1
    #: The copies whose blocks make up a batch, in order; None: all of them (see ``only``).
    active: list[int] | None = None

    @property
    @abstractmethod
    def first_layer(self) -> int:
        """Lowest decoder layer the adapter changes: everything below it is a frozen prefix."""

    @abstractmethod
    def copy_parameters(self, copy: int) -> list[nn.Parameter]:
        """The trainable tensors of copy ``copy`` (and nothing of the frozen base model)."""

    def parameters(self) -> list[nn.Parameter]:
        return [p for copy in range(self.copies) for p in self.copy_parameters(copy)]

    @property
    def trainable_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def copy_trainable_params(self, copy: int) -> int:
        return sum(p.numel() for p in self.copy_parameters(copy))

    @property
    @abstractmethod
    def stochastic(self) -> bool:
        """True when training forward passes are noisy (dropout), so they are no clean measurement."""

    def clip_grad_norm_(self, max_norm: float) -> None:
        """Clip each copy's gradient on its own, as ``clip_grad_norm_`` would clip that copy alone."""
        for copy in range(self.copies):
            torch.nn.utils.clip_grad_norm_(self.copy_parameters(copy), max_norm)

    def drop_gradients(self, copies: list[int]) -> None:
        """Forget the gradients of ``copies``: the optimizer then skips them (moments and step count too)."""
        for copy in copies:
            for p in self.copy_parameters(copy):
                p.grad = None

    @contextmanager
    def only(self, copies: list[int]) -> Iterator[None]:
        """Within this block a batch holds the blocks of ``copies`` only, in that order: copies
        that have stopped training cost nothing more."""
        self.active = list(copies)
        try:
            yield
        finally:
            self.active = None

    @property
    def blocks(self) -> list[int]:
        """The copy of each block of a batch's rows."""
        return list(range(self.copies)) if self.active is None else self.active

    @abstractmethod
    @contextmanager
    def disabled(self) -> Iterator[None]:
        """Within this block ``model`` behaves as the base model (for L_init)."""

    @abstractmethod
    def train(self, mode: bool = True) -> None:
        """Switch the adapter's own dropout; the base model always stays in eval mode."""

    @abstractmethod
    def save_pretrained(self, directory: str | Path, copy: int = 0) -> None:
        """Write copy ``copy`` as a lone adapter that ``load_adapter`` (or PEFT) can attach."""

    @abstractmethod
    def load_weights(self, directory: str | Path, copy: int = 0) -> None:
        """Give copy ``copy`` the weights of the adapter saved in ``directory`` (same placement).
        A saved adapter of a lower rank fills the first components and the rest start with zero
        output (``fill_grown``): the copy then computes exactly what the saved adapter did."""

    @abstractmethod
    def remove(self) -> PreTrainedModel:
        """Detach the adapter and give back the untouched base model."""

    @abstractmethod
    def describe(self, copy: int = 0) -> dict[str, Any]:
        """Everything that defines copy ``copy``'s placement, for results and saved files."""


class ResidualAdapter(Adapter):
    """An adapter that adds ``residual(x)`` to the output of layer ``first_layer``, x being that
    layer's MLP input (the paper's bypass). That whole layer is then frozen prefix too: the
    prefix cache keeps x and the layer's output and replays them plus the residual."""

    #: False inside ``disabled()``.
    enabled: bool = True

    @abstractmethod
    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """What each copy adds to its rows of the layer output, given the layer's MLP input."""


def fill_grown(parameter: nn.Parameter, saved: torch.Tensor, rank_axis: int, *, output_factor: bool) -> None:
    """Copy ``saved`` into ``parameter``, whose rank (its size along ``rank_axis``) may be larger.
    The new components of the output factor (B) are zero, so they add nothing until trained; the
    input factor's (A) keep their fresh init, as LoRA's own init does, so that they can learn."""
    size, rank = parameter.shape[rank_axis], saved.shape[rank_axis]
    others = [n for axis, n in enumerate(saved.shape) if axis != rank_axis]
    if saved.dim() != parameter.dim() or others != [n for a, n in enumerate(parameter.shape) if a != rank_axis]:
        raise MemlawInputError(f"saved weights of shape {tuple(saved.shape)} do not fit {tuple(parameter.shape)}")
    if rank > size:
        raise MemlawInputError(f"the saved adapter has rank {rank}: it cannot be loaded into rank {size}")
    with torch.no_grad():
        if output_factor:
            parameter.zero_()
        parameter.narrow(rank_axis, 0, rank).copy_(saved)


def read_config(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise MemlawInputError(f"{directory} holds no adapter ({CONFIG_FILE} is missing)")
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:  # JSON errors and undecodable bytes
        raise MemlawInputError(f"{path} is damaged ({type(err).__name__}: {err}); train the adapter again") from err
    if not isinstance(saved, dict):
        raise MemlawInputError(f"{path} is damaged (not a JSON object); train the adapter again")
    return saved
