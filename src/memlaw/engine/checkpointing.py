"""Activation checkpointing of the adapted suffix: memory of stacked copies for a recompute.

A training step keeps every activation of the layers from the first adapted one up, for every
row of the batch: K stacked copies keep K times as much. Checkpointed, each of those layers
keeps only its input and recomputes the rest during the backward pass, one layer at a time,
at the cost of a second forward pass through the suffix. The frozen layers below need no
checkpoint: they either come from the prefix cache or build no graph (nothing below them
trains). The recompute replays the same operations on the same inputs, with the same random
state, so the gradients are the same as without it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

from torch import nn
from torch.utils.checkpoint import checkpoint

from memlaw.models.parts import decoder_layers


@contextmanager
def checkpointed_layers(model: nn.Module, first: int) -> Iterator[None]:
    """Within this block, decoder layers ``first`` and up recompute their activations in backward."""
    layers = list(decoder_layers(model))[first:]
    for layer in layers:  # an instance attribute shadows the class's forward, hooks included
        layer.forward = partial(checkpoint, layer.forward, use_reentrant=False)
    try:
        yield
    finally:
        for layer in layers:
            del layer.forward
