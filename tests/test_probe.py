import json

import pytest
import torch

from memlaw.data import make_batch
from memlaw.errors import MemlawInputError
from memlaw.models import build_tiny_model
from memlaw.models.loading import bf16_autocast_available
from memlaw.probe import ProbeConfig, build_data, run_probe
from memlaw.probe.lr_search import LR_FACTORS, LR_SEARCH_STEPS, NEAR_TIE, SCORED_STEPS

REQUIRED_FIELDS = {
    "initial_loss",
    "final_loss",
    "delta_loss",
    "frac_above_half",
    "certified",
    "certified_step",
    "exact_match",
    "token_accuracy",
    "first_error",
    "trainable_params",
    "config",
    "placement",
    "length",
    "items",
    "loss_curve",
}


def hf_mean_loss(model, data, pad_id):
    """The Hugging Face causal-LM loss over answer tokens: full logits, labels -100 elsewhere."""
    batch = make_batch(data, range(len(data.items)), pad_id)
    labels = batch.input_ids.masked_fill(~batch.answer_mask, -100)
    with torch.no_grad():
        return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=labels).loss.item()


@pytest.mark.parametrize("placement", ["bypass", "peft"])
def test_delta_loss_equals_independent_forward_passes(tiny, detach, placement):
    config = ProbeConfig(data="phonebook", length=25, rank=4, placement=placement, epochs=8, batch_size=2)
    data = build_data(config, tiny.tokenizer, len(tiny.tokenizer))
    pad = tiny.tokenizer.pad_token_id
    initial = hf_mean_loss(tiny.model, data, pad)
    result = run_probe(config, tiny)
    detach.append(result.adapter)
    final = hf_mean_loss(result.adapter.model, data, pad)
    assert result.length == 25 and result.num_items == 3
    assert result.initial_loss == pytest.approx(initial, rel=1e-5)
    assert result.final_loss == pytest.approx(final, rel=1e-4)
    assert result.delta_loss == pytest.approx(initial - final, rel=1e-4)
    assert result.final_loss < result.initial_loss


def test_certified_implies_greedy_exact_match_on_every_probe(tokenizer):
    from memlaw.models import build_tiny_model

    outcomes = []
    for data, length, rank, epochs in [
        ("longcontext", 12, 2, 30),
        ("longcontext", 16, 4, 80),
        ("longcontext", 40, 8, 60),
        ("phonebook", 20, 8, 60),
        ("longcontext", 24, 1, 40),
        ("phonebook", 10, 4, 80),
    ]:
        config = ProbeConfig(
            data=data, length=length, rank=rank, epochs=epochs, lr=2e-2, batch_size=2, prompt_format="raw"
        )
        result = run_probe(config, build_tiny_model(tokenizer))
        outcomes.append(result)
        token_probs = [p for item in result.items for p in item["token_probs"]]
        assert result.certified == all(p > 0.5 for p in token_probs)
        if result.certified:  # the sufficiency claim: p > 0.5 everywhere => greedy reproduces everything
            assert result.exact_match == 1.0 and result.token_accuracy == 1.0 and result.first_error is None
    assert any(r.certified for r in outcomes), "no probe certified: the implication was never exercised"
    assert any(not r.certified for r in outcomes)


def test_result_json_has_the_documented_fields(tiny, detach, tmp_path):
    config = ProbeConfig(data="longcontext", ratio=0.5, length=20, rank=2, epochs=3)
    result = run_probe(config, tiny)
    detach.append(result.adapter)
    result.save_json(tmp_path / "r.json")
    saved = json.loads((tmp_path / "r.json").read_text())
    assert REQUIRED_FIELDS <= set(saved)
    assert saved["config"]["ratio"] == 0.5 and saved["config"]["rank"] == 2
    assert saved["placement"] == {
        "placement": "bypass",
        "rank": 2,
        "layer": 3,
        "init": "reference",
        "dropout": 0.0,
        "hidden_size": 64,
    }
    (item,) = saved["items"]
    assert len(item["token_probs"]) == len(item["initial_token_probs"]) == 20
    assert saved["frac_above_half"] == pytest.approx(sum(p > 0.5 for p in item["token_probs"]) / 20)
    assert len(saved["loss_curve"]) == saved["steps"] == 3


def test_probe_rejects_bad_settings(tiny):
    with pytest.raises(MemlawInputError, match="length= is required"):
        ProbeConfig(data="phonebook")
    with pytest.raises(MemlawInputError, match="ratio must be within"):
        ProbeConfig(data="longcontext", length=5, ratio=-0.1)
    with pytest.raises(MemlawInputError, match="rank must be a positive"):
        ProbeConfig(data="longcontext", length=5, rank=0)
    if not bf16_autocast_available(torch.device("cpu")):
        with pytest.raises(MemlawInputError, match="autocast"):
            ProbeConfig(data="longcontext", length=5, device="cpu", autocast=True)
    with pytest.raises(MemlawInputError, match="beyond the model's context of 2048"):
        run_probe(ProbeConfig(data="longcontext", ratio=0.0, length=2100, rank=1, epochs=1), tiny)


@pytest.mark.slow
def test_default_model_certifies_64_random_tokens_at_rank_8(default_model, detach):
    config = ProbeConfig(data="longcontext", length=64, ratio=1.0, rank=8, epochs=200, until="certified")
    result = run_probe(config, default_model)
    detach.append(result.adapter)
    assert result.placement["layer"] == 20 and result.trainable_params == 2 * 576 * 8
    assert result.initial_loss > 10  # random tokens are near-unpredictable for the base model
    assert result.certified and result.exact_match == 1.0 and result.token_accuracy == 1.0


@pytest.mark.skipif(not bf16_autocast_available(torch.device("cpu")), reason="this CPU has no bf16 instructions")
def test_bf16_autocast_trains_on_a_bf16_cpu_and_measures_in_float32(tokenizer):
    base = {"data": "longcontext", "length": 16, "rank": 4, "epochs": 60, "lr": 2e-2, "device": "cpu"}
    exact = run_probe(ProbeConfig(**base), build_tiny_model(tokenizer))
    low = run_probe(ProbeConfig(**base, autocast=True), build_tiny_model(tokenizer))
    assert low.initial_loss == exact.initial_loss  # measured in float32, before any training
    assert low.final_loss < low.initial_loss - 1  # it trains
    # bf16 steps follow a nearby trajectory, not the same one
    assert low.final_loss == pytest.approx(exact.final_loss, rel=0.2, abs=0.05) and low.final_loss != exact.final_loss


def test_the_learning_rate_search_keeps_the_rate_that_learned_most_and_trains_with_it(tokenizer):
    # a base rate far too high for this adapter: the search must come down from it
    base = {"data": "longcontext", "length": 32, "rank": 4, "lr": 3.0, "until": "converged", "max_steps": 60}
    result = run_probe(ProbeConfig(**base, lr_search=True), build_tiny_model(tokenizer))
    choice = result.lr_choice
    scores = dict(choice["scores"])
    assert sorted(scores) == pytest.approx(sorted(3.0 * f for f in LR_FACTORS)) and choice["steps"] == LR_SEARCH_STEPS
    lowest = min(scores.values())
    assert choice["lr"] == min(rate for rate, score in scores.items() if score <= lowest * (1 + NEAR_TIE)) < 3.0
    assert result.config["lr"] == choice["lr"]
    # each candidate scored what it scores trained alone: the chosen rate's last steps, reproduced
    alone = run_probe(
        ProbeConfig(**{**base, "lr": choice["lr"], "max_steps": LR_SEARCH_STEPS, "plateau_steps": LR_SEARCH_STEPS + 1}),
        build_tiny_model(tokenizer),
    )
    tail = alone.loss_curve[-SCORED_STEPS:]
    assert scores[choice["lr"]] == pytest.approx(sum(tail) / len(tail), rel=1e-3)
    # and training then started afresh at that rate: without the search, the same run
    fixed = run_probe(ProbeConfig(**{**base, "lr": choice["lr"]}), build_tiny_model(tokenizer))
    assert result.loss_curve == pytest.approx(fixed.loss_curve, rel=1e-4)
