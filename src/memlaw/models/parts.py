"""Find the pieces of a causal LM that memlaw needs, across architectures."""

from __future__ import annotations

from torch import nn
from transformers import PreTrainedModel

from memlaw.constants import DEFAULT_LAYER_FRACTION
from memlaw.errors import MemlawInputError


def num_layers(model: PreTrainedModel) -> int:
    return int(model.config.num_hidden_layers)


def default_layer(model: PreTrainedModel) -> int:
    """The paper's placement: about two thirds of the depth (layer 20 of 30 for SmolLM2)."""
    return round(DEFAULT_LAYER_FRACTION * num_layers(model))


def decoder_layers(model: PreTrainedModel) -> nn.ModuleList:
    """The model's stack of decoder blocks: the ModuleList as long as the layer count."""
    count = num_layers(model)
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == count:
            return module
    raise MemlawInputError(f"cannot find the decoder layers of {type(model).__name__}")


def check_layer(model: PreTrainedModel, layer: int) -> int:
    return check_layer_index(layer, num_layers(model))


def check_layer_index(layer: int, count: int) -> int:
    """``layer`` as an index from 0; a negative one counts from the top, as in Python (-1: the last)."""
    if not -count <= layer < count:
        raise MemlawInputError(
            f"layer {layer} is out of range: this model has layers 0..{count - 1} (or -{count}..-1 from the top)"
        )
    return layer % count


def layer_mlp(model: PreTrainedModel, layer: int) -> nn.Module:
    """The feed-forward block of decoder layer ``layer`` (``mlp`` in Llama, Qwen, Mistral, GPT-2…)."""
    block = decoder_layers(model)[check_layer(model, layer)]
    for name in ("mlp", "feed_forward", "ffn"):
        module = getattr(block, name, None)
        if isinstance(module, nn.Module):
            return module
    raise MemlawInputError(f"decoder layer {layer} of {type(model).__name__} has no MLP block to bypass")
