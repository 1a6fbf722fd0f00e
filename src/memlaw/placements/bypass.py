"""The paper's placement: a rank-r bypass from the MLP input of one layer to its output.

h_out = Block(h) + dropout(x_mlp_in · A · B), which equals a low-rank linear map running in
parallel with the whole MLP of that layer (``reference-implementation.md`` §1). It is applied
with a forward hook on the MLP, so the base model's modules and weights stay untouched.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel

from memlaw.errors import MemlawInputError
from memlaw.models.parts import check_layer, default_layer, layer_mlp
from memlaw.placements.base import CONFIG_FILE, WEIGHTS_FILE, Adapter

#: "reference": A ~ U(±1/√r), as the authors' code does (kaiming on a (d, r) tensor);
#: "peft": A ~ U(±1/√d), the nn.Linear / PEFT default. B = 0 in both, so training starts at ΔW = 0.
BYPASS_INITS = ("reference", "peft")


@dataclass
class BypassConfig:
    """A rank-``rank`` bypass on the MLP of ``layer`` (default: about 2/3 of the depth)."""

    rank: int
    layer: int | None = None
    init: str = "reference"
    dropout: float = 0.0  # the reference trains with 0.1 on the bypass output

    def __post_init__(self) -> None:
        if self.rank <= 0:
            raise MemlawInputError(f"rank must be a positive integer, got {self.rank}")
        if self.init not in BYPASS_INITS:
            raise MemlawInputError(f"unknown bypass init '{self.init}': use {' or '.join(BYPASS_INITS)}")
        if not 0.0 <= self.dropout < 1.0:
            raise MemlawInputError(f"dropout must be within [0, 1), got {self.dropout}")

    def attach(self, model: PreTrainedModel, *, seed: int = 0) -> BypassAdapter:
        return BypassAdapter(model, self, seed=seed)


def initial_a(d_in: int, rank: int, init: str, seed: int) -> torch.Tensor:
    """The seeded starting A of a bypass (B starts at zero); stacked copies draw the same."""
    bound = 1 / math.sqrt(rank if init == "reference" else d_in)
    return torch.empty(d_in, rank).uniform_(-bound, bound, generator=torch.Generator().manual_seed(seed))


class LowRankBypass(nn.Module):
    """x -> dropout((x · A) · B), kept in float32 whatever the base model's dtype."""

    def __init__(self, d_in: int, d_out: int, rank: int, init: str, dropout: float, seed: int):
        super().__init__()
        self.lora_A = nn.Parameter(initial_a(d_in, rank, init, seed))
        self.lora_B = nn.Parameter(torch.zeros(rank, d_out))
        self.dropout = nn.Dropout(dropout)
        self.enabled = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout((x.to(self.lora_A.dtype) @ self.lora_A) @ self.lora_B)


def save_bypass(directory: str | Path, description: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """A bypass adapter's files: its description as JSON and ``lora_A``/``lora_B`` as safetensors."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    save_file({name: t.detach().cpu().contiguous() for name, t in tensors.items()}, out / WEIGHTS_FILE)
    (out / CONFIG_FILE).write_text(json.dumps(description, indent=2) + "\n")


class BypassAdapter(Adapter):
    kind = "bypass"

    def __init__(self, model: PreTrainedModel, config: BypassConfig, *, seed: int = 0):
        layer = default_layer(model) if config.layer is None else check_layer(model, config.layer)
        self.config = BypassConfig(config.rank, layer, config.init, config.dropout)
        self.model = model
        hidden = int(model.config.hidden_size)
        self.bypass = LowRankBypass(hidden, hidden, config.rank, config.init, config.dropout, seed)
        self.bypass.to(model.device)
        self.bypass.train(False)
        self._hook = layer_mlp(model, layer).register_forward_hook(self._add_bypass)

    @property
    def enabled(self) -> bool:
        return self.bypass.enabled

    def _add_bypass(self, module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return output
        return output + self.residual(args[0]).to(output.dtype)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """What the adapter adds to its layer's output, given that layer's MLP input."""
        return self.bypass(x)

    @property
    def first_layer(self) -> int:
        return int(self.config.layer)

    @property
    def stochastic(self) -> bool:
        return self.config.dropout > 0

    def parameters(self) -> list[nn.Parameter]:
        return list(self.bypass.parameters())

    @contextmanager
    def disabled(self) -> Iterator[None]:
        self.bypass.enabled = False
        try:
            yield
        finally:
            self.bypass.enabled = True

    def train(self, mode: bool = True) -> None:
        self.bypass.train(mode)

    def save_pretrained(self, directory: str | Path, copy: int = 0) -> None:
        save_bypass(directory, self.describe(), dict(self.bypass.named_parameters()))

    @classmethod
    def from_pretrained(cls, model: PreTrainedModel, directory: str | Path, config: dict[str, Any]) -> BypassAdapter:
        fields = {k: config[k] for k in ("rank", "layer", "init", "dropout")}
        adapter = cls(model, BypassConfig(**fields))
        if int(model.config.hidden_size) != config["hidden_size"]:
            raise MemlawInputError(
                f"adapter in {directory} was trained for hidden size {config['hidden_size']}, "
                f"this model has {model.config.hidden_size}"
            )
        adapter.bypass.load_state_dict(load_file(Path(directory) / WEIGHTS_FILE, device=str(model.device)))
        return adapter

    def remove(self) -> PreTrainedModel:
        self._hook.remove()
        return self.model

    def describe(self) -> dict[str, Any]:
        return {"placement": self.kind, **asdict(self.config), "hidden_size": int(self.model.config.hidden_size)}
