"""Loading frozen causal language models, and tiny random ones for tests."""

from memlaw.models.loading import (
    DEFAULT_MODEL,
    LoadedModel,
    load_model,
    load_model_config,
    load_tokenizer,
    resolve_device,
)
from memlaw.models.parts import decoder_layers, default_layer, num_layers
from memlaw.models.tiny import build_tiny_model

__all__ = [
    "DEFAULT_MODEL",
    "LoadedModel",
    "build_tiny_model",
    "decoder_layers",
    "default_layer",
    "load_model",
    "load_model_config",
    "load_tokenizer",
    "num_layers",
    "resolve_device",
]
