from pathlib import Path

import pytest
import torch

from memlaw.errors import MemlawInputError
from memlaw.models import build_tiny_model, default_layer, load_model, resolve_device
from memlaw.models.cache import cached_folder
from memlaw.models.loading import DEFAULT_MODEL, _resolve_source


def test_default_model_resolves_to_the_packaged_gguf_file():
    folder, gguf = _resolve_source(DEFAULT_MODEL, None)
    assert gguf == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert (Path(folder) / gguf).is_file()
    assert _resolve_source(f"{folder}/{gguf}", None) == (folder, gguf)


def test_missing_local_models_are_refused(tmp_path):
    with pytest.raises(MemlawInputError, match="unknown model .*no such folder"):
        _resolve_source(str(tmp_path / "absent"), None)
    with pytest.raises(MemlawInputError, match="no such GGUF file"):
        _resolve_source(str(tmp_path / "absent.gguf"), None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MemlawInputError, match="is a folder without config.json"):
        load_model(str(tmp_path / "empty"))


def test_local_folder_loads_frozen_with_a_pad_token(tiny_dir):
    loaded = load_model(tiny_dir, device="cpu")
    assert not any(p.requires_grad for p in loaded.model.parameters())
    assert not loaded.model.training
    assert loaded.tokenizer.pad_token_id is not None
    assert loaded.model.device.type == "cpu"
    half = load_model(tiny_dir, device="cpu", dtype="bfloat16")
    assert half.model.dtype == torch.bfloat16


def test_default_layer_is_two_thirds_of_the_depth(tokenizer):
    assert default_layer(build_tiny_model(tokenizer, num_layers=6).model) == 4
    assert default_layer(build_tiny_model(tokenizer, num_layers=4).model) == 3


def test_tiny_models_are_reproducible(tokenizer):
    a, b = build_tiny_model(tokenizer, seed=1).model, build_tiny_model(tokenizer, seed=1).model
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    assert a.config.vocab_size == len(tokenizer)


def test_devices_and_dtypes():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(MemlawInputError, match="no CUDA GPU"):
            resolve_device("cuda")
    with pytest.raises(MemlawInputError, match="unknown device"):
        resolve_device("tpu-ish")
    with pytest.raises(MemlawInputError, match="unknown dtype"):
        load_model("whatever", dtype="float8")


def test_the_cache_of_a_converted_gguf_file_is_named_after_its_content(tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"first version")
    first = cached_folder(gguf, "float32")
    assert cached_folder(gguf, "float32") == first and cached_folder(gguf, "bfloat16") != first
    gguf.write_bytes(b"second version")  # a changed file never reuses the stale conversion
    assert cached_folder(gguf, "float32") != first


@pytest.mark.slow
def test_a_second_load_of_a_gguf_model_comes_from_the_cache_and_computes_the_same(default_model):
    folder, gguf = _resolve_source(DEFAULT_MODEL, None)
    cache = cached_folder(Path(folder) / gguf, "float32")
    assert cache.is_dir()  # the session's first load converted the GGUF file and kept the result
    again = load_model(device="cpu")
    assert Path(again.model.config.name_or_path) == cache
    messages = [{"role": "user", "content": "Where is the printer? Room B2, next to the scanner."}]
    ids = default_model.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
    ids = getattr(ids, "input_ids", ids)
    again_ids = again.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
    assert torch.equal(getattr(again_ids, "input_ids", again_ids), ids)
    assert (again.tokenizer.eos_token_id, again.tokenizer.pad_token_id) == (
        default_model.tokenizer.eos_token_id,
        default_model.tokenizer.pad_token_id,
    )
    with torch.inference_mode():
        assert torch.equal(again.model(ids).logits, default_model.model(ids).logits)
