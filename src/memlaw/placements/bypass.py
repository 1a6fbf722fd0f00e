"""The paper's placement: a rank-r bypass from the MLP input of one layer to its output.

h_out = Block(h) + dropout(x_mlp_in · A · B), which equals a low-rank linear map running in
parallel with the whole MLP of that layer (docs/reference.md §1). It is applied with a forward
hook on the MLP, so the base model's modules and weights stay untouched.

One ``BypassAdapter`` holds K ≥ 1 copies (a lone adapter is K = 1). Copy j owns its own
A_j (d, r_j) and B_j (r_j, d); the batch is K blocks of rows, and one batched matmul over the
factors zero-padded to the largest rank applies every copy to its own block. Padding is built
from the parameters at each step, so it carries no parameters and no optimizer state.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel

from memlaw.errors import MemlawInputError
from memlaw.io import write_json_atomic
from memlaw.models.parts import check_layer, default_layer, layer_mlp
from memlaw.placements.base import CONFIG_FILE, WEIGHTS_FILE, ResidualAdapter, fill_grown

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

    @classmethod
    def from_settings(cls, *, rank: int, layer, init: str, dropout: float, **_: Any) -> BypassConfig:
        """From probe settings (the PEFT-only ones do not apply)."""
        if isinstance(layer, (list, str)):
            raise MemlawInputError("the bypass placement sits on exactly one layer: give layer= as one number")
        return cls(rank, layer, init, dropout)

    def attach(self, model: PreTrainedModel, *, seed: int = 0) -> BypassAdapter:
        return BypassAdapter(model, [self], [seed])


def initial_a(d_in: int, rank: int, init: str, seed: int) -> torch.Tensor:
    """The seeded starting A of a bypass (B starts at zero)."""
    bound = 1 / math.sqrt(rank if init == "reference" else d_in)
    return torch.empty(d_in, rank).uniform_(-bound, bound, generator=torch.Generator().manual_seed(seed))


class BypassAdapter(ResidualAdapter):
    kind = "bypass"

    def __init__(self, model: PreTrainedModel, configs: list[BypassConfig], seeds: list[int]):
        first = configs[0]
        layer = default_layer(model) if first.layer is None else check_layer(model, first.layer)
        shared = {(layer if c.layer is None else check_layer(model, c.layer), c.init, c.dropout) for c in configs}
        if len(shared) > 1:
            raise MemlawInputError(
                "stacked bypass copies must share layer, init and dropout; only rank and seed may differ"
            )
        self.model = model
        self.copies = len(configs)
        self.configs = [BypassConfig(c.rank, layer, c.init, c.dropout) for c in configs]
        self.width = max(c.rank for c in configs)
        hidden = int(model.config.hidden_size)
        self.lora_A = nn.ParameterList(
            initial_a(hidden, c.rank, c.init, seed).to(model.device) for c, seed in zip(configs, seeds, strict=True)
        )
        self.lora_B = nn.ParameterList(torch.zeros(c.rank, hidden, device=model.device) for c in configs)
        self.dropout = nn.Dropout(first.dropout)
        self.dropout.train(False)
        self.enabled = True
        self._hook = layer_mlp(model, layer).register_forward_hook(self._add_bypass)

    def _add_bypass(self, module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return output
        return output + self.residual(args[0]).to(output.dtype)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """dropout(x_j · A_j · B_j) for each copy j's block of rows, in float32 whatever the model's dtype."""
        blocks = self.blocks
        if len(blocks) == 1:  # no padding or stacking to pay for
            j = blocks[0]
            return self.dropout((x.to(self.lora_A[j].dtype) @ self.lora_A[j]) @ self.lora_B[j])
        a = torch.stack([F.pad(self.lora_A[j], (0, self.width - self.lora_A[j].shape[1])) for j in blocks])
        b = torch.stack([F.pad(self.lora_B[j], (0, 0, 0, self.width - self.lora_B[j].shape[0])) for j in blocks])
        # a: (K, d, r_max), b: (K, r_max, d); block k of the rows belongs to copy blocks[k]
        blocks = x.reshape(len(blocks), -1, x.shape[-1]).to(a.dtype)
        return self.dropout(torch.bmm(torch.bmm(blocks, a), b)).reshape(x.shape)

    @property
    def first_layer(self) -> int:
        return int(self.configs[0].layer)

    @property
    def stochastic(self) -> bool:
        return self.configs[0].dropout > 0

    def copy_parameters(self, copy: int) -> list[nn.Parameter]:
        return [self.lora_A[copy], self.lora_B[copy]]

    @contextmanager
    def disabled(self) -> Iterator[None]:
        self.enabled = False
        try:
            yield
        finally:
            self.enabled = True

    def train(self, mode: bool = True) -> None:
        self.dropout.train(mode)

    def save_pretrained(self, directory: str | Path, copy: int = 0) -> None:
        """``lora_A``/``lora_B`` as safetensors and the description as JSON, which ``load_bypass`` reads."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {"lora_A": self.lora_A[copy], "lora_B": self.lora_B[copy]}
        save_file({name: t.detach().cpu().contiguous() for name, t in tensors.items()}, out / WEIGHTS_FILE)
        write_json_atomic(out / CONFIG_FILE, self.describe(copy))

    def load_weights(self, directory: str | Path, copy: int = 0) -> None:
        tensors = load_file(Path(directory) / WEIGHTS_FILE, device=str(self.model.device))
        fill_grown(self.lora_A[copy], tensors["lora_A"], 1, output_factor=False)  # A: (d, r)
        fill_grown(self.lora_B[copy], tensors["lora_B"], 0, output_factor=True)  # B: (r, d)

    def remove(self) -> PreTrainedModel:
        self._hook.remove()
        return self.model

    def describe(self, copy: int = 0) -> dict[str, Any]:
        return {
            "placement": self.kind,
            **asdict(self.configs[copy]),
            "hidden_size": int(self.model.config.hidden_size),
        }


def load_bypass(model: PreTrainedModel, directory: str | Path, saved: dict[str, Any]) -> BypassAdapter:
    """Attach the bypass saved in ``directory`` (its ``adapter_config.json`` is ``saved``)."""
    if int(model.config.hidden_size) != saved["hidden_size"]:
        raise MemlawInputError(
            f"adapter in {directory} was trained for hidden size {saved['hidden_size']}, "
            f"this model has {model.config.hidden_size}"
        )
    adapter = BypassConfig(**{f.name: saved[f.name] for f in fields(BypassConfig)}).attach(model)
    adapter.load_weights(directory)
    return adapter
