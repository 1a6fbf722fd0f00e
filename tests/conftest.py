"""Shared fixtures: the real SmolLM2 tokenizer, tiny random Llamas, and the default model once."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from transformers.utils import logging

from memlaw.models import LoadedModel, build_tiny_model, load_model, load_tokenizer
from memlaw.placements import Adapter

logging.set_verbosity_error()


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory) -> Iterator[None]:
    """Converted GGUF models cached for the session, never in the user's cache: the default
    model converts once, and every later load (CLI runs included) reads the cache."""
    before = os.environ.get("MEMLAW_CACHE")
    os.environ["MEMLAW_CACHE"] = str(tmp_path_factory.mktemp("memlaw-cache"))
    yield
    if before is None:
        os.environ.pop("MEMLAW_CACHE", None)
    else:
        os.environ["MEMLAW_CACHE"] = before


@pytest.fixture(autouse=True)
def memlaw_home(tmp_path, monkeypatch):
    """memlaw's own folder (calibrated laws, track record) per test, never the user's; and
    --quiet's switch of every tqdm bar (an environment variable) undone after each test."""
    home = tmp_path / "memlaw-home"
    monkeypatch.setenv("MEMLAW_HOME", str(home))
    before = os.environ.get("TQDM_DISABLE")
    yield home
    if before is None:
        os.environ.pop("TQDM_DISABLE", None)
    else:
        os.environ["TQDM_DISABLE"] = before


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


@pytest.fixture()
def tiny_law(tmp_path, tiny_dir):
    """Writes a law for the tiny model (raw prompts), fitted on synthetic points (initial loss 11):
    ``tiny_law(**provenance)`` -> (path, law); ``reference`` options go to its ``Reference``."""
    import numpy as np

    from memlaw.io import write_json_atomic
    from memlaw.law.fit import MemoryLaw
    from memlaw.law.state import Provenance, Reference

    def write(reference: dict | None = None, **provenance):
        rng = np.random.default_rng(0)
        rank, length = (a.ravel().astype(float) for a in np.meshgrid([1, 2, 4, 8, 16], [8, 16, 32, 64, 128]))
        delta = 20.0 * rank**0.7 * length**-0.45 + 0.2 + rng.normal(0, 0.01, rank.shape)
        law = MemoryLaw(bootstrap=50, seed=0).fit(rank, length, delta)
        law.provenance_ = Provenance({"model": tiny_dir, "prompt_format": "raw", **provenance})
        law.reference_ = Reference([{"ratio": 1.0, "length": 8.0, "initial_loss": 11.0}], **(reference or {}))
        path = tmp_path / "law.json"
        write_json_atomic(path, law.to_dict())
        return str(path), law

    return write


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


def _assert_same_result(stacked, alone) -> None:
    """Two probe results equal within float tolerance (a stacked copy against the same probe alone)."""
    assert stacked.trainable_params == alone.trainable_params
    assert stacked.placement == alone.placement
    assert stacked.initial_loss == pytest.approx(alone.initial_loss, rel=1e-6)
    assert stacked.final_loss == pytest.approx(alone.final_loss, rel=1e-3, abs=1e-5)
    assert stacked.delta_loss == pytest.approx(alone.delta_loss, rel=1e-4)
    assert stacked.loss_curve == pytest.approx(alone.loss_curve, rel=1e-3, abs=1e-5)
    for a, b in zip(stacked.items, alone.items, strict=True):
        assert a["token_probs"] == pytest.approx(b["token_probs"], abs=1e-4)
    assert (stacked.certified, stacked.certified_step, stacked.steps) == (
        alone.certified,
        alone.certified_step,
        alone.steps,
    )
    assert stacked.exact_match == alone.exact_match


@pytest.fixture()
def same_result():
    """``same_result(a, b)`` asserts two probe results agree (measurements, curve, certification)."""
    return _assert_same_result
