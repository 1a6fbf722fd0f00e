"""Stopping rules on real training curves: budget, certified, converged (plateau) and the cap."""

import pytest
import torch

from memlaw.data import encode_items, long_context_item
from memlaw.errors import MemlawInputError
from memlaw.models import build_tiny_model
from memlaw.models.loading import bf16_autocast_available
from memlaw.placements import PLACEMENTS, BypassConfig
from memlaw.probe import ProbeConfig, run_probe, run_probes
from memlaw.training import SFT, TrainConfig, train_adapter
from memlaw.training.trainer import Plateau, loss_slope, train_copies


def random_tokens(tokenizer, length, seed=0):
    return encode_items([long_context_item(tokenizer, length, 1.0, vocab_size=len(tokenizer), seed=seed)], tokenizer)


def train(tokenizer, data, rank=1, **settings):
    loaded = build_tiny_model(tokenizer)
    adapter = BypassConfig(rank=rank).attach(loaded.model, seed=0)
    return train_adapter(adapter, data, SFT(), TrainConfig(**settings), pad_id=tokenizer.pad_token_id)


def test_converged_stops_on_a_plateau_of_the_last_learning_rate(tokenizer):
    # rank 1 cannot hold 96 random tokens: the loss falls, flattens, and training ends there
    data = random_tokens(tokenizer, 96)
    log = train(tokenizer, data, until="converged", max_steps=3000, plateau_steps=20, plateau_tol=0.01, lr=2e-2)
    assert log.stop_reason == "converged" and log.certified_step is None
    assert 60 <= log.steps < 3000 and not log.budget_limited
    curve = log.loss_curve
    assert curve[-1] < curve[0] - 1.0, "it learned before it stopped"
    # the rule: the last 20 steps did not beat the best loss before them by 0.01 nats
    assert min(curve[-20:]) > min(curve[:-20]) - 0.01


def test_a_run_that_plateaus_short_of_certification_trains_on_from_the_plateau(tokenizer):
    # rank 2 cannot certify 48 random tokens: SFT converges with tokens at p <= 0.5
    data = random_tokens(tokenizer, 48)
    settings = {"until": "converged", "max_steps": 1500, "plateau_steps": 20, "lr": 2e-2}
    plain = train(tokenizer, data, rank=2, **settings)
    assert plain.stop_reason == "converged" and plain.certified_step is None and plain.finish_step is None
    finished = train(tokenizer, data, rank=2, finish_stubborn=True, **settings)
    # the same run up to the plateau, then a phase of its own, which ends on its own plateau here
    assert finished.finish_step == plain.steps
    assert finished.loss_curve[: plain.steps] == plain.loss_curve
    assert finished.steps > plain.steps and finished.stop_reason == "converged"
    # the cap counts both phases
    capped = train(tokenizer, data, rank=2, finish_stubborn=True, **{**settings, "max_steps": plain.steps + 5})
    assert (capped.finish_step, capped.steps, capped.stop_reason) == (plain.steps, plain.steps + 5, "max_steps")


def test_finishing_leaves_a_run_that_certifies_as_it_was(tokenizer):
    data = random_tokens(tokenizer, 12)
    plain = train(tokenizer, data, rank=8, until="converged", max_steps=400, lr=2e-2)
    finished = train(tokenizer, data, rank=8, until="converged", max_steps=400, lr=2e-2, finish_stubborn=True)
    assert plain.stop_reason == finished.stop_reason == "certified" and finished.finish_step is None
    assert finished.loss_curve == plain.loss_curve


def plateau_schedule(plateau_steps=5, plateau_tol=0.01):
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=0.03)
    return optimizer, Plateau(
        optimizer, TrainConfig(until="converged", plateau_steps=plateau_steps, plateau_tol=plateau_tol), 1
    )


def test_a_flat_mean_loss_does_not_stop_stubborn_tokens_that_still_climb():
    # the case of a file nearly memorised: the mean loss is flat at 0.05 nats, three tokens are
    # still at p < 0.5 (0.45 nats above ln 2 in all) and climb by 0.05 nats an epoch
    optimizer, plateau = plateau_schedule()
    excess = [0.45 - 0.05 * epoch for epoch in range(9)]
    assert not any(plateau.end_epoch(0.05, e, 3) for e in excess)
    assert optimizer.param_groups[0]["lr"] == 0.03 and plateau.last_improved == "stubborn excess"
    # the mean rule alone would have cut the rate after 5 epochs; a plateau of both measures does
    for _ in range(5):
        plateau.end_epoch(0.05, excess[-1], 3)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.003)


def test_a_stubborn_token_that_stalls_is_a_plateau_and_then_convergence():
    # one token 0.3 nats above ln 2 moving by 0.0005 an epoch: 0.0025 per plateau window of 5
    # epochs, less than the tolerance of 0.01 per stubborn token
    optimizer, plateau = plateau_schedule()
    ends = [plateau.end_epoch(0.05, 0.3 - 0.0005 * epoch, 1) for epoch in range(16)]
    assert ends == [False] * 15 + [True]  # two cuts after 5 and 10 epochs, converged at 15
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0003)


def test_while_every_token_is_stubborn_the_rule_is_the_mean_rule():
    # all 10 tokens above ln 2: the excess is 10 × (mean − ln 2), its tolerance 10 × plateau_tol,
    # so an epoch that lowers the mean by more than 0.01 is progress and one that lowers it by less is not
    for fall, rate in ((0.011, 0.03), (0.009, 0.003)):
        optimizer, plateau = plateau_schedule(plateau_steps=1)
        for mean in (3.0, 3.0 - fall):
            plateau.end_epoch(mean, 10 * (mean - 0.6931471805599453), 10)
        assert optimizer.param_groups[0]["lr"] == pytest.approx(rate)


def test_a_budget_that_ends_while_the_loss_falls_is_budget_limited(tokenizer):
    data = random_tokens(tokenizer, 96)
    log = train(tokenizer, data, steps=30, lr=2e-2)
    assert log.stop_reason == "budget" and log.budget_limited and log.loss_slope < 0
    capped = train(tokenizer, data, until="converged", max_steps=30, lr=2e-2)
    assert capped.stop_reason == "max_steps" and capped.budget_limited and capped.steps == 30


def test_a_long_budget_on_a_memorised_item_is_not_budget_limited(tokenizer):
    data = random_tokens(tokenizer, 12)
    log = train(tokenizer, data, rank=8, steps=400, lr=2e-2)
    assert log.stop_reason == "budget" and log.certified_step is not None and not log.budget_limited


def test_a_race_stops_every_copy_once_one_certifies(tokenizer):
    # rank 16 certifies 12 random tokens within a few dozen steps; rank 1 alone would run on
    data = random_tokens(tokenizer, 12)
    loaded = build_tiny_model(tokenizer)
    adapter = PLACEMENTS["bypass"].stack(loaded.model, [BypassConfig(rank=16), BypassConfig(rank=1)], [0, 0])
    config = TrainConfig(until="converged", max_steps=400, lr=2e-2)
    fast, slow = train_copies(adapter, data, SFT(), config, pad_id=tokenizer.pad_token_id, race=True)
    assert (fast.stop_reason, slow.stop_reason) == ("certified", "outrun")
    assert fast.steps == fast.certified_step == slow.steps < 400 and slow.certified_step is None


def test_certified_and_converged_both_stop_at_certification(tokenizer):
    data = random_tokens(tokenizer, 12)
    for until in ("certified", "converged"):
        log = train(tokenizer, data, rank=8, until=until, epochs=400, lr=2e-2)
        assert log.stop_reason == "certified" and log.steps == log.certified_step < 400


def test_the_slope_is_judged_at_the_full_learning_rate():
    # the same fall per step, once at the full rate and once at a tenth of it
    curve = [5.0 - 0.01 * t for t in range(50)]
    assert loss_slope(curve, [1e-2] * 50, 50, 1e-2) == pytest.approx(-0.01)
    assert loss_slope(curve, [1e-3] * 50, 50, 1e-2) == pytest.approx(-0.1)
    assert loss_slope(curve[-1:], [1e-2], 50, 1e-2) == 0.0


def test_stacked_copies_converge_on_their_own_schedules(tokenizer, same_result):
    base = {"data": "longcontext", "length": 48, "lr": 2e-2, "until": "converged", "max_steps": 600}
    base["plateau_steps"] = 20
    configs = [ProbeConfig(**base, rank=r, seed=s) for r, s in [(16, 1), (1, 0)]]
    quick, slow = run_probes(configs, build_tiny_model(tokenizer), max_copies=2)
    assert (quick.stacked_copies, quick.stop_reason, slow.stop_reason) == (2, "certified", "converged")
    assert quick.steps < slow.steps / 5, "the certified copy left the batch long before the other stopped"
    same_result(quick, run_probe(configs[0], build_tiny_model(tokenizer)))
    # Once the quick copy leaves, the batch shape and so the float rounding change: the slow copy
    # follows its lone trajectory within float noise, which can move its plateau by a few steps.
    alone = run_probe(configs[1], build_tiny_model(tokenizer))
    assert (slow.stop_reason, slow.budget_limited) == (alone.stop_reason, alone.budget_limited)
    assert slow.steps == pytest.approx(alone.steps, rel=0.05)
    assert slow.final_loss == pytest.approx(alone.final_loss, rel=1e-3)
    assert slow.loss_curve[:100] == pytest.approx(alone.loss_curve[:100], abs=1e-2)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"until": "forever"}, "until must be budget, certified or converged"),
        ({"until": "converged", "check_every": 0}, "needs check_every > 0"),
        ({"plateau_tol": 0.0}, "plateau_tol must be a positive"),
        ({"max_steps": 0}, "max_steps must be a positive"),
        ({"until": "converged", "steps": 100}, "caps the steps with max_steps="),
        ({"finish_stubborn": True}, "finish_stubborn starts at a plateau short of certification"),
    ],
)
def test_bad_stopping_settings(settings, message):
    with pytest.raises(MemlawInputError, match=message):
        TrainConfig(**settings)


@pytest.mark.skipif(not bf16_autocast_available(torch.device("cpu")), reason="this CPU has no bf16 matrix units")
def test_a_bf16_run_that_stops_at_certification_is_certified_in_float32(tokenizer):
    config = ProbeConfig(data="longcontext", length=12, rank=8, lr=2e-2, epochs=400, until="certified", autocast=True)
    result = run_probe(config, build_tiny_model(tokenizer))
    assert result.stop_reason == "certified" and result.certified and result.certified_step == result.steps
