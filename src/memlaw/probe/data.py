"""The encoded items of a probe, checked against the model before any weight is loaded."""

from __future__ import annotations

import math

from transformers import PretrainedConfig, PreTrainedTokenizerBase

from memlaw.data.encoding import EncodedData, encode_items
from memlaw.data.files import load_items
from memlaw.data.longcontext import long_context_item, read_text
from memlaw.data.phonebook import phonebook_items
from memlaw.errors import MemlawInputError
from memlaw.models.loading import LoadedModel, load_model, load_model_config, load_tokenizer
from memlaw.models.parts import check_layer_index
from memlaw.probe.config import ProbeConfig


def build_data(config: ProbeConfig, tokenizer: PreTrainedTokenizerBase, vocab_size: int) -> EncodedData:
    """The encoded items of a probe, cut to exactly ``config.length`` answer tokens when given."""
    encode = lambda items: encode_items(
        items, tokenizer, prompt_format=config.prompt_format, system_prompt=config.system_prompt, end=config.end_token
    )
    if config.data == "longcontext":
        text = read_text(config.text) if config.text else None
        item = long_context_item(
            tokenizer, config.length, config.ratio, vocab_size=vocab_size, text=text, seed=config.data_seed
        )
        return encode([item])
    if config.data == "phonebook":
        count = max(1, math.ceil(config.length / 10))
        while True:  # numbers take ~10 tokens with digit tokenizers, fewer with merging ones
            data = encode(phonebook_items(count, seed=config.data_seed))
            if data.length >= config.length:
                return data.cut(config.length)
            count = count * 2 + 1
    data = encode(load_items(config.data, config.fields))
    return data if config.length is None else data.cut(config.length)


def check_fits(config: ProbeConfig, data: EncodedData, model_config: PretrainedConfig) -> None:
    """Layers inside the model, a rank within its width, and every sequence inside its context window."""
    width = getattr(model_config, "hidden_size", None)
    if width is not None and config.rank > int(width):
        # an adapter's full rank is at most the width of what it maps: more rank adds no capacity
        raise MemlawInputError(f"rank {config.rank} exceeds the model's width {width}: use a rank of at most {width}")
    layers = [config.layer] if isinstance(config.layer, int) else config.layer
    if isinstance(layers, list):
        for layer in layers:
            check_layer_index(layer, int(model_config.num_hidden_layers))
    context = getattr(model_config, "max_position_embeddings", None)
    if context is not None and data.max_sequence_length > context:
        raise MemlawInputError(
            f"an item is {data.max_sequence_length} tokens long with its prompt, "
            f"beyond the model's context of {context}"
        )


def prepare(config: ProbeConfig, loaded: LoadedModel | None) -> tuple[LoadedModel, EncodedData]:
    """The probe's encoded data, checked against the model's config, and the model (loaded after
    the checks pass, unless ``loaded`` is given)."""
    if loaded is None:
        tokenizer = load_tokenizer(config.model, config.gguf_file)
        model_config = load_model_config(config.model, config.gguf_file)
    else:
        tokenizer, model_config = loaded.tokenizer, loaded.model.config
    data = build_data(config, tokenizer, int(model_config.vocab_size))
    check_fits(config, data, model_config)
    if loaded is None:
        loaded = load_model(
            config.model, gguf_file=config.gguf_file, dtype=config.dtype, device=config.device, tokenizer=tokenizer
        )
    return loaded, data
