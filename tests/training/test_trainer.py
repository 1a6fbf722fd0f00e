import pytest
import torch

from memlaw.data import encode_items, long_context_item
from memlaw.errors import MemlawInputError
from memlaw.measure import TokenLosses
from memlaw.models import build_tiny_model
from memlaw.placements import BypassConfig
from memlaw.training import SFT, TrainConfig, copy_losses, train_adapter


def random_tokens(tokenizer, length, seed=0):
    item = long_context_item(tokenizer, length, 1.0, vocab_size=len(tokenizer), seed=seed)
    return encode_items([item], tokenizer)


def train(loaded, data, **settings):
    adapter = BypassConfig(rank=4, dropout=settings.pop("dropout", 0.0)).attach(
        loaded.model, seed=settings.get("seed", 0)
    )
    log = train_adapter(adapter, data, SFT(), TrainConfig(**settings), pad_id=loaded.tokenizer.pad_token_id)
    return adapter, log


def test_training_is_deterministic_for_a_seed(tokenizer):
    data = random_tokens(tokenizer, 24)
    runs = [train(build_tiny_model(tokenizer), data, epochs=15, seed=s, dropout=0.1) for s in (3, 3, 4)]
    (a1, log1), (a2, log2), (_a3, log3) = runs
    assert log1.loss_curve == log2.loss_curve
    assert torch.equal(a1.lora_B[0], a2.lora_B[0])
    assert log1.loss_curve != log3.loss_curve
    assert log1.loss_curve[-1] < log1.loss_curve[0]


def test_steps_override_epochs_and_batches_cover_the_items(tokenizer):
    data = encode_items(
        [long_context_item(tokenizer, 5, 1.0, vocab_size=len(tokenizer), seed=s) for s in range(5)], tokenizer
    )
    assert TrainConfig(epochs=3, batch_size=2).total_steps(5) == 9
    _, log = train(build_tiny_model(tokenizer), data, epochs=3, batch_size=2, check_every=0)
    assert log.steps == 9 and len(log.loss_curve) == 9
    _, log = train(build_tiny_model(tokenizer), data, epochs=3, steps=4, batch_size=2, check_every=0)
    assert log.steps == 4


def test_until_certified_stops_at_the_certified_step(tokenizer):
    data = random_tokens(tokenizer, 16)
    _, full = train(build_tiny_model(tokenizer), data, epochs=120, lr=2e-2)
    assert full.certified_step is not None and not full.stopped_early
    _, early = train(build_tiny_model(tokenizer), data, epochs=120, lr=2e-2, until="certified")
    assert early.stopped_early and early.steps == full.certified_step == early.certified_step
    _, unchecked = train(build_tiny_model(tokenizer), data, epochs=120, lr=2e-2, check_every=0)
    assert unchecked.certified_step is None


def test_copy_losses_are_weighted_means_per_copy_and_zero_without_weights():
    losses = torch.tensor([1.0, 2.0, 4.0, 3.0], requires_grad=True)
    copy = torch.tensor([0, 0, 0, 1])
    per_copy = copy_losses(losses, torch.tensor([1.0, 0.0, 1.0, 0.0]), copy, 2)
    assert per_copy[0].item() == pytest.approx(2.5)
    per_copy[1].backward()  # copy 1 weighs nothing: zero loss, still in the graph, no gradient
    assert per_copy[1].item() == 0 and torch.count_nonzero(losses.grad) == 0
    tokens = TokenLosses(
        losses.detach(), torch.ones(4, dtype=torch.bool), torch.zeros(4), torch.arange(4), torch.zeros(4)
    )
    assert copy_losses(losses, SFT().weights(tokens), copy, 2).tolist() == pytest.approx([7 / 3, 3.0])


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"epochs": 0}, "epochs"), ({"batch_size": -2}, "batch_size"), ({"lr": 0}, "lr"), ({"steps": 0}, "steps")],
)
def test_bad_training_settings(settings, message):
    with pytest.raises(MemlawInputError, match=message):
        TrainConfig(**settings)
