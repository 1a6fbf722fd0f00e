import math

import pytest
import torch

from memlaw.data import encode_items, make_batch, phonebook_items
from memlaw.errors import MemlawInputError
from memlaw.measure import evaluate_tokens
from memlaw.models import build_tiny_model, decoder_layers
from memlaw.placements import BypassConfig, load_adapter


def randomise(adapter, seed=0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapter.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.3)


@pytest.fixture()
def batch(tokenizer):
    data = encode_items(phonebook_items(3, seed=0), tokenizer)
    return data, make_batch(data, range(3), tokenizer.pad_token_id)


def test_counts_and_default_layer(tiny, detach):
    adapter = BypassConfig(rank=5).attach(tiny.model)
    detach.append(adapter)
    assert adapter.trainable_params == 2 * 64 * 5
    assert adapter.describe()["layer"] == round(2 / 3 * 4)


@pytest.mark.parametrize(("init", "bound"), [("reference", 1 / math.sqrt(16)), ("peft", 1 / math.sqrt(64))])
def test_init_scales_and_zero_b(tiny, detach, init, bound):
    adapter = BypassConfig(rank=16, init=init).attach(tiny.model, seed=1)
    detach.append(adapter)
    a, b = adapter.lora_A[0], adapter.lora_B[0]
    assert a.abs().max() <= bound and a.abs().max() > 0.8 * bound
    assert torch.count_nonzero(b) == 0
    again = BypassConfig(rank=16, init=init).attach(build_tiny_model(tiny.tokenizer).model, seed=1)
    assert torch.equal(again.lora_A[0], a)


def test_adds_x_mlp_in_times_a_b_to_the_layer_output(tiny, detach, batch):
    _, inputs = batch
    layer = 2
    block = decoder_layers(tiny.model)[layer]
    seen = {}
    block.mlp.register_forward_hook(lambda m, args, out: seen.__setitem__("x", args[0].detach()))
    block.register_forward_hook(
        lambda m, args, out: seen.__setitem__("h", (out[0] if isinstance(out, tuple) else out).detach())
    )
    run = lambda: tiny.model(input_ids=inputs.input_ids, attention_mask=inputs.attention_mask)
    run()
    base_h = seen["h"]
    adapter = BypassConfig(rank=4, layer=layer, dropout=0.0).attach(tiny.model)
    detach.append(adapter)
    run()  # B = 0: nothing changes yet
    assert torch.allclose(seen["h"], base_h, atol=1e-6)
    randomise(adapter)
    run()
    expected = base_h + seen["x"] @ adapter.lora_A[0].detach() @ adapter.lora_B[0].detach()
    assert torch.allclose(seen["h"], expected, atol=1e-5)
    with adapter.disabled():
        run()
    assert torch.allclose(seen["h"], base_h, atol=1e-6)


def test_remove_restores_the_base_model(tiny, batch):
    data, _ = batch
    pad = tiny.tokenizer.pad_token_id
    base = evaluate_tokens(tiny.model, data, pad_id=pad).losses
    adapter = BypassConfig(rank=4, dropout=0.0).attach(tiny.model)
    randomise(adapter)
    assert not torch.allclose(evaluate_tokens(tiny.model, data, pad_id=pad).losses, base)
    adapter.remove()
    assert torch.equal(evaluate_tokens(tiny.model, data, pad_id=pad).losses, base)


def test_save_and_load_roundtrip(tiny, tmp_path, batch):
    data, _ = batch
    pad = tiny.tokenizer.pad_token_id
    adapter = BypassConfig(rank=3, layer=1, init="peft", dropout=0.05).attach(tiny.model)
    randomise(adapter)
    before = evaluate_tokens(tiny.model, data, pad_id=pad).losses
    adapter.save_pretrained(tmp_path / "adapter")
    assert {p.name for p in (tmp_path / "adapter").iterdir()} == {"adapter_config.json", "adapter_model.safetensors"}
    fresh = build_tiny_model(tiny.tokenizer)
    loaded = load_adapter(fresh.model, tmp_path / "adapter")
    assert loaded.describe() == adapter.describe()
    assert torch.allclose(evaluate_tokens(fresh.model, data, pad_id=pad).losses, before, atol=1e-6)


def test_bad_settings(tiny):
    with pytest.raises(MemlawInputError, match="rank must be a positive"):
        BypassConfig(rank=0)
    with pytest.raises(MemlawInputError, match=r"layer 4 is out of range: this model has layers 0\.\.3"):
        BypassConfig(rank=2, layer=4).attach(tiny.model)
    with pytest.raises(MemlawInputError, match="init"):
        BypassConfig(rank=2, init="xavier")
