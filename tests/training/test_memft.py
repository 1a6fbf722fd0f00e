"""MemFT objectives: the OT mask and its gradient, fallbacks, the sliding window, the curriculum."""

import itertools
import math

import pytest
import torch

from memlaw.data import encode_items, long_context_item, phonebook_items
from memlaw.errors import MemlawInputError
from memlaw.measure import TokenLosses
from memlaw.measure.teacher_forced import batch_token_losses
from memlaw.models import build_tiny_model
from memlaw.placements import BypassConfig
from memlaw.training import TrainConfig, copy_losses, make_objective, train_adapter

LN2 = math.log(2)


def random_tokens(tokenizer, length, seed=0):
    return encode_items([long_context_item(tokenizer, length, 1.0, vocab_size=len(tokenizer), seed=seed)], tokenizer)


def tokens_of(losses, correct=None, positions=None):
    losses = torch.tensor(losses, dtype=torch.float32)
    n = len(losses)
    correct = torch.ones(n, dtype=torch.bool) if correct is None else torch.tensor(correct)
    positions = torch.arange(n) if positions is None else torch.tensor(positions)
    zeros = torch.zeros(n, dtype=torch.long)
    return TokenLosses(losses, correct, zeros, positions, zeros)


def test_ot_masks_exactly_the_tokens_above_ln2_and_its_gradient_is_sft_on_them(tokenizer):
    loaded = build_tiny_model(tokenizer)
    data = random_tokens(tokenizer, 24)
    adapter = BypassConfig(rank=4).attach(loaded.model, seed=0)
    pad = loaded.tokenizer.pad_token_id
    # train until some tokens have crossed p = 0.5 and some have not
    for _ in range(20):
        train_adapter(adapter, data, make_objective("sft"), TrainConfig(epochs=10, lr=2e-2, check_every=0), pad_id=pad)
        tokens = batch_token_losses(loaded.model, data, [0], pad_id=pad)
        above = tokens.losses.detach() > LN2
        if int(above.sum()) < len(above) // 2:
            break
    assert 0 < int(above.sum()) < len(above)  # a mixed batch, or the test proves nothing
    weights = make_objective("memft-ot").weights(tokens)
    assert torch.equal(weights, above.float())

    params = adapter.parameters()
    ot = torch.autograd.grad(copy_losses(tokens.losses, weights, tokens.copy, 1).sum(), params, retain_graph=True)
    sft_on_subset = torch.autograd.grad(tokens.losses[above].mean(), params)
    for a, b in zip(ot, sft_on_subset, strict=True):
        torch.testing.assert_close(a, b)


def test_ot_fallbacks_when_every_token_is_already_above_the_threshold():
    tokens = tokens_of([0.1, 0.2, 0.05])  # all p > 0.5
    assert make_objective("memft-ot").weights(tokens).tolist() == [1.0, 1.0, 1.0]  # reference: an SFT step
    assert make_objective("memft-ot", {"fallback": "skip"}).weights(tokens).tolist() == [0.0, 0.0, 0.0]
    mixed = tokens_of([0.1, 2.0, 0.05])
    assert make_objective("memft-ot").weights(mixed).tolist() == [0.0, 1.0, 0.0]
    # a stricter threshold (p < 0.9, loss > 0.105) selects more tokens
    stricter = tokens_of([0.2, 2.0, 0.05])
    assert make_objective("memft-ot", {"threshold": 0.9}).weights(stricter).tolist() == [1.0, 1.0, 0.0]


def test_skip_fallback_makes_no_update_and_sft_fallback_is_an_sft_step(tokenizer):
    data = random_tokens(tokenizer, 12)

    def trained(method, options):
        loaded = build_tiny_model(tokenizer)
        adapter = BypassConfig(rank=4).attach(loaded.model, seed=0)
        before = adapter.lora_A[0].detach().clone()
        config = TrainConfig(steps=3, lr=2e-2, check_every=0)
        train_adapter(adapter, data, make_objective(method, options), config, pad_id=loaded.tokenizer.pad_token_id)
        return before, adapter.lora_A[0].detach()

    # threshold p < 1e-30: no token of a random model qualifies, so the fallback decides every step
    before, skipped = trained("memft-ot", {"threshold": 1e-30, "fallback": "skip"})
    assert torch.equal(before, skipped)
    _, fallen_back = trained("memft-ot", {"threshold": 1e-30, "fallback": "sft"})
    _, sft = trained("sft", None)
    assert torch.equal(fallen_back, sft) and not torch.equal(before, sft)


def test_sliding_window_anchors_at_the_first_argmax_error_and_widens_when_stuck():
    n = 120
    losses = [2.0] * n
    correct = [True] * n
    correct[30] = correct[60] = False  # the anchor is 30, the first error, not 60
    objective = make_objective("memft-sw", {"mode": "sliding"})
    soft = torch.sigmoid(torch.tensor(10 * (2.0 - LN2))).item()

    def expected(position, width):
        if position <= 30:
            return soft
        return soft * (math.exp(-(position - 30) / 20) if position - 30 < width else 0.01)

    weights = objective.weights(tokens_of(losses, correct)).tolist()
    assert weights == pytest.approx([expected(i, 50) for i in range(n)], rel=1e-5)
    for _ in range(2):  # the same anchor three steps running: patience 1, 2
        objective.weights(tokens_of(losses, correct))
    widened = objective.weights(tokens_of(losses, correct)).tolist()  # patience 3: window 50 × 1.5
    assert widened == pytest.approx([expected(i, 75) for i in range(n)], rel=1e-5)
    assert widened[30 + 60] > 0.01 * soft * 1.01 and weights[30 + 60] == pytest.approx(0.01 * soft)
    correct[30] = True  # the anchor moves on to 60: the window resets
    moved = objective.weights(tokens_of(losses, correct)).tolist()
    assert moved[59] == pytest.approx(soft) and moved[60 + 49] == pytest.approx(soft * math.exp(-49 / 20), rel=1e-5)
    assert moved[60 + 50] == pytest.approx(0.01 * soft)


def test_sliding_window_without_errors_is_the_soft_threshold_and_falls_back_to_the_mean():
    objective = make_objective("memft-sw", {"mode": "sliding"})
    weights = objective.weights(tokens_of([3.0, LN2, 0.01]))
    assert weights[1].item() == pytest.approx(0.5) and weights[0] > 0.99 and weights[2] < 0.002
    # with the reference's sharpness 10 the soft weight never drops below sigmoid(-10 ln 2) ≈ 1e-3,
    # so its fallback (Σw < 1e-5) is out of reach; a sharper sigmoid reaches it, and the plain mean trains
    assert objective.weights(tokens_of([1e-4, 1e-4])).tolist() == pytest.approx([9.77e-4, 9.77e-4], rel=1e-2)
    sharp = make_objective("memft-sw", {"mode": "sliding", "sharpness": 30})
    assert sharp.weights(tokens_of([1e-4, 1e-4])).tolist() == [1.0, 1.0]


def test_curriculum_grows_the_active_items_on_one_fixed_order(tokenizer):
    objective = make_objective("memft-sw")  # auto: several items -> curriculum
    order = torch.Generator().manual_seed(0)
    sizes, orders = [], []
    for epoch in (0, 19, 20, 40, 60, 80, 200):
        items = objective.epoch_items(epoch, 10, 2, order)
        sizes.append(len(items))
        orders.append(items.tolist())
    assert sizes == [2, 2, 4, 6, 8, 10, 10]
    assert all(later[: len(earlier)] == earlier for earlier, later in itertools.pairwise(orders))
    assert objective.total_steps(100, 10, 2) == 20 * (1 + 2 + 3 + 4) + 20 * 5
    # 7 items in batches of 3: stages of at least one batch, all 7 at the end
    assert [objective.active_items(e, 7, 3) for e in (0, 20, 40, 60, 80)] == [3, 3, 3, 3, 7]
    # training with it runs and checks certification on every item, not only the active ones
    loaded = build_tiny_model(tokenizer)
    data = encode_items(phonebook_items(5, seed=0), tokenizer)
    adapter = BypassConfig(rank=4).attach(loaded.model, seed=0)
    config = TrainConfig(epochs=6, batch_size=1, check_every=1)
    curriculum = make_objective("memft-sw", {"stage_epochs": [2, 4], "stage_ratios": [0.2, 0.6, 1.0]})
    log = train_adapter(adapter, data, curriculum, config, pad_id=loaded.tokenizer.pad_token_id)
    assert log.steps == 2 * 1 + 2 * 3 + 2 * 5


@pytest.mark.parametrize(
    ("method", "options", "message"),
    [
        ("memft-ot", {"fallback": "maybe"}, "fallback must be sft or skip"),
        ("memft-ot", {"window": 3}, "unknown option 'window' for method memft-ot"),
        ("memft-ot", {"threshold": 1.5}, "threshold is a probability"),
        ("memft-sw", {"stage_epochs": [20, 10], "stage_ratios": [0.2, 0.5, 1.0]}, "positive and increasing"),
        ("memft-sw", {"stage_ratios": [0.5, 1.0]}, "one entry more than stage_epochs"),
        ("memft-sw", {"mode": "diagonal"}, "mode must be one of"),
        ("sft", {"threshold": 0.5}, "sft takes no options"),
        ("memft-xx", None, "unknown method 'memft-xx'"),
    ],
)
def test_bad_objective_options_are_clear_errors(method, options, message):
    with pytest.raises(MemlawInputError, match=message):
        make_objective(method, options)
