"""Frozen-prefix cache: what enters the first adapted layer is computed once per item.

The layers below the first adapted layer receive no gradient and never change, so their
output for an item is the same at every step. ``PrefixCache`` runs them once, keeps each
item's hidden states, and during ``replay`` stands in for those layers in the model's own
forward pass (the model still builds its masks and rotary embeddings, which cost nothing
next to a layer), so only the layers from the adapted one on run at each step.

Items are cached separately and batches are right-padded, so any batch composition (any
shuffle, any copy of a stacked adapter) can be assembled from the same cache exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedModel

from memlaw.data.encoding import EncodedData, make_batch
from memlaw.models.parts import decoder_layers, layer_mlp
from memlaw.placements.base import Adapter, ResidualAdapter

log = logging.getLogger("memlaw")

#: Use at most this share of the free memory for the cache.
MEMORY_SHARE = 0.5


class _Captured(Exception):
    """Stops the capture pass once the wanted layer's input is seen."""


class _Replay(nn.Module):
    def __init__(self, produce: Callable[[], torch.Tensor]):
        super().__init__()
        self.produce = produce

    def forward(self, hidden_states: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        return self.produce()


class _PassThrough(nn.Module):
    def forward(self, hidden_states: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        return hidden_states


class PrefixCache:
    """Hidden states entering decoder layer ``layer`` of ``model`` for every item of ``data``.

    With a ``residual`` adapter on layer ``layer - 1``, the states are taken with the adapter
    disabled, that layer's MLP input is kept too, and replay adds the adapter's term to them:
    the adapted layer itself then runs once, not at every step.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        data: EncodedData,
        layer: int,
        *,
        pad_id: int,
        batch_size: int = 16,
        residual: ResidualAdapter | None = None,
    ):
        if layer <= 0:
            raise ValueError("a prefix cache needs at least one frozen layer below the adapter")
        self.model, self.layer, self.residual = model, layer, residual
        self.states: list[torch.Tensor] = []
        self.mlp_inputs: list[torch.Tensor] = []
        seen: dict[str, torch.Tensor] = {}

        def capture(module: nn.Module, args: tuple, kwargs: dict) -> None:
            seen["state"] = args[0] if args else kwargs["hidden_states"]
            raise _Captured

        layers = decoder_layers(model)
        hooks = [layers[layer].register_forward_pre_hook(capture, with_kwargs=True)] if layer < len(layers) else []
        if residual is not None:
            keep_input = lambda module, args: seen.__setitem__("mlp_input", args[0])
            hooks.append(layer_mlp(model, layer - 1).register_forward_pre_hook(keep_input))
            if layer == len(layers):  # the adapter sits on the last layer: its output is the norm's input
                hooks.append(model.get_decoder().norm.register_forward_pre_hook(lambda m, args: capture(m, args, {})))
        try:
            with torch.no_grad(), residual.disabled() if residual is not None else nullcontext():
                # no_grad, not inference_mode: the states feed later training graphs
                for start in range(0, len(data.items), batch_size):
                    indices = range(start, min(start + batch_size, len(data.items)))
                    batch = make_batch(data, indices, pad_id).to(model.device)
                    try:
                        model.get_decoder()(
                            input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False
                        )
                    except _Captured:
                        pass
                    for row, index in enumerate(indices):
                        length = data.items[index].sequence_length
                        self.states.append(seen["state"][row, :length].clone())
                        if residual is not None:
                            self.mlp_inputs.append(seen["mlp_input"][row, :length].clone())
        finally:
            for hook in hooks:
                hook.remove()

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.states + self.mlp_inputs)

    @contextmanager
    def replay(self, indices: Sequence[int]) -> Iterator[None]:
        """Within this block the model's layers below ``layer`` return the cached states of ``indices``."""
        hidden = _padded([self.states[i] for i in indices])
        x = _padded([self.mlp_inputs[i] for i in indices]) if self.residual is not None else None

        def produce() -> torch.Tensor:  # runs inside the forward pass, so the adapter's term is in the graph
            if self.residual is None or not self.residual.enabled:
                return hidden
            return hidden + self.residual.residual(x).to(hidden.dtype)

        layers = decoder_layers(self.model)
        originals = [layers[i] for i in range(self.layer)]
        for i in range(self.layer - 1):
            layers[i] = _PassThrough()
        layers[self.layer - 1] = _Replay(produce)
        try:
            yield
        finally:
            for i, module in enumerate(originals):
                layers[i] = module


def _padded(rows: list[torch.Tensor]) -> torch.Tensor:
    """Right-padded (B, S, d) batch of per-item (S_i, d) states; padding is never attended to."""
    out = rows[0].new_zeros((len(rows), max(len(r) for r in rows), rows[0].shape[-1]))
    for row, state in enumerate(rows):
        out[row, : len(state)] = state
    return out


def build_prefix_cache(
    model: PreTrainedModel, data: EncodedData, adapter: Adapter, *, pad_id: int, batch_size: int = 16
) -> PrefixCache | None:
    """A cache when it helps and fits in memory; otherwise None, saying why in the log."""
    residual = adapter if isinstance(adapter, ResidualAdapter) else None  # its own layer is prefix too
    layer = adapter.first_layer + (1 if residual is not None else 0)
    if layer <= 0:
        return None
    element = next(model.parameters()).element_size()
    tokens = sum(item.sequence_length for item in data.items)
    needed = tokens * int(model.config.hidden_size) * element * (2 if residual is not None else 1)
    free = free_memory(model.device)
    if needed > MEMORY_SHARE * free:
        log.warning(
            "prefix cache disabled: it would need %.2f GB and %.2f GB is free; every step recomputes layers 0..%d",
            needed / 1e9,
            free / 1e9,
            layer - 1,
        )
        return None
    return PrefixCache(model, data, layer, pad_id=pad_id, batch_size=batch_size, residual=residual)


def free_memory(device: torch.device) -> int:
    """Bytes free on ``device``: the GPU's free memory, or the host's MemAvailable."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 1 << 62  # no /proc (not Linux): assume it fits
