"""GGUF models de-quantised once: the weights, config and tokenizer transformers builds from a GGUF
file are saved as a plain model folder (safetensors), and later calls load that instead.

Converting and de-quantising a GGUF file costs most of a short command's time (``memlaw ask``,
``memlaw plan --data``); loading safetensors costs a fraction of it (benchmarks/model_load.py).
The folder is named after the GGUF file's SHA-256, the transformers version that converted it
and the dtype, so a changed file or a new converter never reuses stale weights. It lives in
``$MEMLAW_CACHE`` (default ``$XDG_CACHE_HOME/memlaw`` or ``~/.cache/memlaw``); deleting it
only costs the next call its conversion.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import transformers
from safetensors.torch import save_model
from transformers import PreTrainedModel, PreTrainedTokenizerBase


def cache_root() -> Path:
    if os.environ.get("MEMLAW_CACHE"):
        return Path(os.environ["MEMLAW_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "memlaw"


@functools.lru_cache(maxsize=8)
def _digest(path: str, size: int, modified_ns: int) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _prefix(gguf_path: Path) -> str:
    status = gguf_path.stat()
    digest = _digest(str(gguf_path.resolve()), status.st_size, status.st_mtime_ns)
    return f"{digest[:24]}-transformers{transformers.__version__}"


def cached_folder(gguf_path: Path, dtype: str) -> Path:
    """Where ``gguf_path`` de-quantised into ``dtype`` is (or will be) kept."""
    return cache_root() / "models" / f"{_prefix(gguf_path)}-{dtype}"


def find_cached(gguf_path: Path) -> Path | None:
    """A cached folder of ``gguf_path`` in any dtype, for its config and tokenizer alone."""
    folder = cache_root() / "models"
    if not folder.is_dir():
        return None
    return next(iter(sorted(folder.glob(f"{_prefix(gguf_path)}-*"))), None)


def save_cached(folder: Path, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Save ``model`` and ``tokenizer`` as ``folder``, whole or not at all. A cache that cannot be
    written (no space, read-only home) costs only speed; another process saving the same
    folder at the same time wins and ours is dropped."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    except OSError:
        return
    try:
        # transformers refuses to save a model loaded from GGUF (it counts as quantised), though its
        # weights are plain de-quantised tensors: they are saved as they are, the config without
        # the GGUF quantisation entry
        config = copy.deepcopy(model.config)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.save_pretrained(staging)
        model.generation_config.save_pretrained(staging)
        save_model(model, str(staging / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save_pretrained(staging)
        staging.rename(folder)
    except OSError:
        pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
