"""K bypass adapters trained in one pass over the shared frozen model.

Copy j's rank-r_j factors sit zero-padded in stacked tensors A (K, d, r_max) and
B (K, r_max, d). Padded entries have zero gradient and stay exactly zero under AdamW, so
copy j computes x·A_j·B_j as it would alone. The batch is K blocks of rows, block j for
copy j, and one batched matmul applies every copy to its own block.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from memlaw.errors import MemlawInputError
from memlaw.models.parts import check_layer, default_layer, layer_mlp
from memlaw.placements.base import Adapter
from memlaw.placements.bypass import BypassConfig, initial_a, save_bypass


class StackedBypassAdapter(Adapter):
    kind = "bypass"

    def __init__(self, model: PreTrainedModel, configs: list[BypassConfig], seeds: list[int]):
        first = configs[0]
        layer = default_layer(model) if first.layer is None else check_layer(model, first.layer)
        shared = {(layer if c.layer is None else c.layer, c.init, c.dropout) for c in configs}
        if len(shared) > 1:
            raise MemlawInputError(
                "stacked bypass copies must share layer, init and dropout; only rank and seed may differ"
            )
        self.model = model
        self.copies = len(configs)
        self.configs = [BypassConfig(c.rank, layer, c.init, c.dropout) for c in configs]
        self.ranks = [c.rank for c in configs]
        hidden = int(model.config.hidden_size)
        width = max(self.ranks)
        a = torch.zeros(self.copies, hidden, width)
        for j, (config, seed) in enumerate(zip(configs, seeds, strict=True)):
            a[j, :, : config.rank] = initial_a(hidden, config.rank, config.init, seed)  # as a lone adapter starts
        self.lora_A = nn.Parameter(a.to(model.device))
        self.lora_B = nn.Parameter(torch.zeros(self.copies, width, hidden, device=model.device))
        self.dropout = nn.Dropout(first.dropout)
        self.dropout.train(False)
        self.enabled = True
        self._hook = layer_mlp(model, layer).register_forward_hook(self._add_bypass)

    def _add_bypass(self, module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return output
        return output + self.residual(args[0]).to(output.dtype)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """What each copy adds to its rows of the layer output, given the layer's MLP input."""
        blocks = x.reshape(self.copies, -1, x.shape[-1]).to(self.lora_A.dtype)  # block j: copy j's rows
        return self.dropout(torch.bmm(torch.bmm(blocks, self.lora_A), self.lora_B)).reshape(x.shape)

    @property
    def first_layer(self) -> int:
        return int(self.configs[0].layer)

    @property
    def stochastic(self) -> bool:
        return self.configs[0].dropout > 0

    @property
    def trainable_params(self) -> int:
        return sum(self.copy_trainable_params(j) for j in range(self.copies))

    def copy_trainable_params(self, copy: int) -> int:
        return 2 * int(self.model.config.hidden_size) * self.ranks[copy]

    def parameters(self) -> list[nn.Parameter]:
        return [self.lora_A, self.lora_B]

    def clip_grad_norm_(self, max_norm: float) -> None:
        """Per copy, exactly as ``torch.nn.utils.clip_grad_norm_`` would clip that copy alone."""
        with torch.no_grad():
            grads = [p.grad for p in self.parameters() if p.grad is not None]
            norms = torch.sqrt(sum(g.pow(2).sum(dim=(1, 2)) for g in grads))
            scale = torch.clamp(max_norm / (norms + 1e-6), max=1.0)
            for g in grads:
                g.mul_(scale[:, None, None])

    def snapshot_copies(self, copies: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(p[j], p[j].detach().clone()) for p in self.parameters() for j in copies]

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
        """Copy ``copy`` in the files of a lone ``BypassAdapter`` (``load_adapter`` reads them)."""
        rank = self.ranks[copy]
        tensors = {"lora_A": self.lora_A[copy, :, :rank], "lora_B": self.lora_B[copy, :rank, :]}
        save_bypass(directory, self.copy_describe(copy), tensors)

    def remove(self) -> PreTrainedModel:
        self._hook.remove()
        return self.model

    def describe(self) -> dict[str, Any]:
        return {"placement": self.kind, "copies": [self.copy_describe(j) for j in range(self.copies)]}

    def copy_describe(self, copy: int) -> dict[str, Any]:
        config = self.configs[copy]
        return {
            "placement": self.kind,
            "rank": config.rank,
            "layer": config.layer,
            "init": config.init,
            "dropout": config.dropout,
            "hidden_size": int(self.model.config.hidden_size),
        }
