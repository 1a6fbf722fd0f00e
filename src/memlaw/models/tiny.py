"""Tiny randomly initialised Llama-style models: real architecture, real tokenizer, no download."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from memlaw.models.loading import LoadedModel, freeze


def build_tiny_model(
    tokenizer: PreTrainedTokenizerBase,
    *,
    hidden_size: int = 64,
    num_layers: int = 4,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 128,
    max_positions: int = 2048,
    embedding_std: float = 0.5,
    seed: int = 0,
) -> LoadedModel:
    """A frozen Llama with ``tokenizer``'s vocabulary; the same ``seed`` gives the same weights.

    The (tied) embeddings get a large ``embedding_std``: at the usual 0.02 a 64-wide model's
    logits stay within a few nats of uniform, so no adapter could push a token past p = 0.5
    and certification could never be tested.
    """
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
        torch.nn.init.normal_(model.get_input_embeddings().weight, std=embedding_std)
    return LoadedModel(model=freeze(model), tokenizer=tokenizer, name=f"tiny-llama-{hidden_size}x{num_layers}")
