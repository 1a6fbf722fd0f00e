import logging

import pytest
import torch

from memlaw.data import encode_items, phonebook_items
from memlaw.engine import prefix_cache
from memlaw.engine.prefix_cache import PrefixCache, build_prefix_cache
from memlaw.measure import evaluate_tokens
from memlaw.models import build_tiny_model
from memlaw.placements import BypassConfig, PeftLoraConfig
from memlaw.probe import ProbeConfig, run_probe


@pytest.mark.parametrize(("placement", "layer"), [("bypass", 2), ("bypass", 4), ("peft", 3), ("peft", [2, 4])], ids=str)
def test_cached_probe_equals_the_plain_probe(tokenizer, placement, layer):
    # PhoneBook entries differ in key length, so shuffled batches pad differently every epoch
    settings = {"data": "phonebook", "length": 40, "rank": 4, "placement": placement, "layer": layer}
    settings.update(epochs=6, batch_size=3, lr=2e-2)
    results = []
    for cached in (False, True):
        loaded = build_tiny_model(tokenizer, num_layers=6)
        results.append(run_probe(ProbeConfig(**settings, prefix_cache=cached), loaded))
    plain, cached = results
    assert cached.initial_loss == pytest.approx(plain.initial_loss, rel=1e-6)
    assert cached.final_loss == pytest.approx(plain.final_loss, rel=1e-4, abs=1e-5)
    assert cached.delta_loss == pytest.approx(plain.delta_loss, rel=1e-4)
    assert cached.loss_curve == pytest.approx(plain.loss_curve, rel=1e-4)
    for a, b in zip(cached.items, plain.items, strict=True):
        assert a["token_probs"] == pytest.approx(b["token_probs"], abs=1e-5)
    assert cached.exact_match == plain.exact_match


def test_replay_leaves_the_model_as_it_was(tiny):
    data = encode_items(phonebook_items(3, seed=1), tiny.tokenizer)
    pad = tiny.tokenizer.pad_token_id
    layers_before = list(tiny.model.model.layers)
    plain = evaluate_tokens(tiny.model, data, pad_id=pad).losses
    cache = PrefixCache(tiny.model, data, 2, pad_id=pad, batch_size=2)
    assert len(cache.states) == 3 and cache.nbytes == sum(i.sequence_length for i in data.items) * 64 * 4
    replayed = evaluate_tokens(tiny.model, data, pad_id=pad, cache=cache).losses
    assert torch.allclose(replayed, plain, atol=1e-5)
    assert list(tiny.model.model.layers) == layers_before
    assert torch.equal(evaluate_tokens(tiny.model, data, pad_id=pad).losses, plain)


def test_which_prefix_is_cached(tiny, detach):
    data = encode_items(phonebook_items(2, seed=1), tiny.tokenizer)
    pad = tiny.tokenizer.pad_token_id
    everywhere = PeftLoraConfig(rank=2, layers="all").attach(build_tiny_model(tiny.tokenizer).model)
    assert build_prefix_cache(everywhere.model, data, everywhere, pad_id=pad) is None  # nothing is frozen
    lora = PeftLoraConfig(rank=2, layers=[2]).attach(build_tiny_model(tiny.tokenizer).model)
    cache = build_prefix_cache(lora.model, data, lora, pad_id=pad)
    assert cache.layer == 2 and not cache.mlp_inputs
    bypass = BypassConfig(rank=2, layer=2).attach(tiny.model)
    detach.append(bypass)
    cache = build_prefix_cache(tiny.model, data, bypass, pad_id=pad)
    assert cache.layer == 3 and len(cache.mlp_inputs) == 2  # the bypassed layer itself is cached


def test_no_cache_without_memory(tiny, detach, monkeypatch, caplog):
    data = encode_items(phonebook_items(2, seed=1), tiny.tokenizer)
    bypass = BypassConfig(rank=2, layer=2).attach(tiny.model)
    detach.append(bypass)
    monkeypatch.setattr(prefix_cache, "MEMORY_SHARE", 0.0)
    with caplog.at_level(logging.WARNING, logger="memlaw"):
        assert build_prefix_cache(tiny.model, data, bypass, pad_id=tiny.tokenizer.pad_token_id) is None
    assert "prefix cache disabled: it would need" in caplog.text
