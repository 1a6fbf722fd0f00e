"""Shared fixtures: the real SmolLM2 tokenizer, tiny random Llamas, and the default model once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from transformers.utils import logging

from memlaw.models import LoadedModel, build_tiny_model, load_model, load_tokenizer
from memlaw.placements import Adapter

logging.set_verbosity_error()


@pytest.fixture(scope="session")
def tokenizer():
    """SmolLM2's tokenizer (read from the packaged GGUF file): a real BPE with a chat template."""
    return load_tokenizer()


@pytest.fixture()
def tiny(tokenizer) -> LoadedModel:
    """A fresh 4-layer, 64-wide random Llama (weights identical in every test)."""
    return build_tiny_model(tokenizer)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, tokenizer) -> str:
    """The tiny model and tokenizer saved as a local model folder, for CLI runs."""
    folder = tmp_path_factory.mktemp("tiny-model")
    loaded = build_tiny_model(tokenizer)
    loaded.model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def default_model() -> LoadedModel:
    """SmolLM2-135M-Instruct, loaded once per session (about 20 s on two cores)."""
    return load_model(device="cpu")


@pytest.fixture()
def detach() -> Iterator[list[Adapter]]:
    """Adapters appended here are removed after the test, leaving shared models untouched."""
    adapters: list[Adapter] = []
    yield adapters
    for adapter in adapters:
        adapter.remove()


@pytest.fixture()
def cli(capsys):
    """Run ``memlaw ARGS...`` in-process: returns (exit code, stdout, stderr)."""
    from memlaw.cli.main import main

    def run(*argv: str) -> tuple[int, str, str]:
        try:
            code = main(list(argv))
        except SystemExit as exit_:  # argparse usage errors
            code = exit_.code
        out, err = capsys.readouterr()
        return code, out, err

    return run
