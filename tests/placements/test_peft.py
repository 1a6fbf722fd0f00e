import pytest
import torch
from peft import PeftModel
from peft.tuners.lora import LoraLayer

from memlaw.data import encode_items, phonebook_items
from memlaw.errors import MemlawInputError
from memlaw.measure import evaluate_tokens
from memlaw.models import build_tiny_model
from memlaw.placements import PeftLoraConfig, load_adapter


def randomise(adapter):
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in adapter.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.2)


def lora_layer_indices(model):
    return sorted(
        {int(name.split(".layers.")[1].split(".")[0]) for name, m in model.named_modules() if isinstance(m, LoraLayer)}
    )


def test_trainable_params_and_layers(tiny, detach):
    adapter = PeftLoraConfig(rank=8).attach(tiny.model)
    detach.append(adapter)
    # gate and up: 64 -> 128, down: 128 -> 64; each r * (in + out)
    assert adapter.trainable_params == 8 * ((64 + 128) * 3)
    assert lora_layer_indices(adapter.model) == [3]


def test_all_linear_is_every_linear_layer_but_the_head_as_peft_spells_it(tiny, detach):
    adapter = PeftLoraConfig(rank=1, layers="all", target_modules=["all-linear"]).attach(tiny.model)
    detach.append(adapter)
    assert adapter.describe()["target_modules"] == sorted(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    # per layer: q and o 64 -> 64, k and v 64 -> 32, gate and up 64 -> 128, down 128 -> 64
    assert adapter.trainable_params == 4 * ((64 + 64) * 2 + (64 + 32) * 2 + (64 + 128) * 3)
    assert not any("lm_head" in name for name, _ in adapter.peft_model.named_modules() if "lora_A" in name)


def test_all_layers_and_custom_modules(tiny, detach):
    adapter = PeftLoraConfig(rank=2, layers="all", target_modules=["q_proj", "v_proj"]).attach(tiny.model)
    detach.append(adapter)
    assert lora_layer_indices(adapter.model) == [0, 1, 2, 3]
    # q: 64 -> 64, v: 64 -> 32 (2 kv heads of 16) on 4 layers
    assert adapter.trainable_params == 4 * 2 * ((64 + 64) + (64 + 32))


def test_saved_adapter_reloads_with_peft_and_gives_the_same_probabilities(tiny, tmp_path):
    data = encode_items(phonebook_items(4, seed=2), tiny.tokenizer)
    pad = tiny.tokenizer.pad_token_id
    adapter = PeftLoraConfig(rank=4, layers=[1, 2]).attach(tiny.model)
    randomise(adapter)
    probs = evaluate_tokens(adapter.model, data, pad_id=pad).probs
    adapter.save_pretrained(tmp_path / "lora")

    fresh = build_tiny_model(tiny.tokenizer).model
    peft_model = PeftModel.from_pretrained(fresh, str(tmp_path / "lora"))
    reloaded = evaluate_tokens(peft_model.get_base_model(), data, pad_id=pad).probs
    assert torch.allclose(reloaded, probs, atol=1e-6)

    via_memlaw = load_adapter(build_tiny_model(tiny.tokenizer).model, tmp_path / "lora")
    assert via_memlaw.describe()["layers"] == [1, 2]
    assert torch.allclose(evaluate_tokens(via_memlaw.model, data, pad_id=pad).probs, probs, atol=1e-6)


def test_disabled_and_unload_give_the_base_model(tiny):
    data = encode_items(phonebook_items(2, seed=0), tiny.tokenizer)
    pad = tiny.tokenizer.pad_token_id
    base = evaluate_tokens(tiny.model, data, pad_id=pad).losses
    adapter = PeftLoraConfig(rank=4).attach(tiny.model)
    randomise(adapter)
    assert not torch.allclose(evaluate_tokens(adapter.model, data, pad_id=pad).losses, base)
    with adapter.disabled():
        assert torch.allclose(evaluate_tokens(adapter.model, data, pad_id=pad).losses, base)
    model = adapter.remove()
    assert not any(isinstance(m, LoraLayer) for m in model.modules())
    assert torch.allclose(evaluate_tokens(model, data, pad_id=pad).losses, base)


def test_bad_settings(tiny):
    with pytest.raises(MemlawInputError, match="rank"):
        PeftLoraConfig(rank=-1)
    with pytest.raises(MemlawInputError, match="out of range"):
        PeftLoraConfig(rank=2, layers=[9]).attach(tiny.model)
    with pytest.raises(MemlawInputError, match="PEFT cannot place LoRA"):
        PeftLoraConfig(rank=2, target_modules=["no_such_module"]).attach(build_tiny_model(tiny.tokenizer).model)
