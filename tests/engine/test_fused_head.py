import pytest
import torch
from torch import nn

from memlaw.engine.fused_head import head_cross_entropy


def plain(head, hidden, targets, softcap):
    logits = head(hidden).float()
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return nn.functional.cross_entropy(logits, targets, reduction="none"), logits.argmax(-1) == targets


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("softcap", [None, 5.0])
@pytest.mark.parametrize("chunk", [3, 64])
def test_fused_head_matches_plain_cross_entropy_and_its_gradient(bias, softcap, chunk):
    generator = torch.Generator().manual_seed(0)
    head = nn.Linear(16, 50, bias=bias).requires_grad_(False)
    with torch.no_grad():
        head.weight.copy_(torch.randn(50, 16, generator=generator))
    hidden = torch.randn(11, 16, generator=generator, requires_grad=True)
    targets = torch.randint(0, 50, (11,), generator=generator)
    scale = torch.rand(11, generator=generator)  # a weighted loss, like MemFT's

    losses, correct = head_cross_entropy(head, hidden, targets, softcap=softcap, chunk=chunk)
    (losses * scale).sum().backward()
    fused_grad = hidden.grad.clone()
    hidden.grad = None
    expected, expected_correct = plain(head, hidden, targets, softcap)
    (expected * scale).sum().backward()

    assert torch.allclose(losses, expected, atol=1e-5)
    assert torch.equal(correct, expected_correct)
    assert torch.allclose(fused_grad, hidden.grad, atol=1e-5)


def test_no_gradient_work_under_inference_mode():
    head = nn.Linear(8, 20, bias=False).requires_grad_(False)
    with torch.inference_mode():
        losses, _ = head_cross_entropy(head, torch.randn(5, 8), torch.randint(0, 20, (5,)))
    assert losses.shape == (5,) and not losses.requires_grad


def test_trainable_head_takes_the_plain_path():
    head = nn.Linear(8, 20, bias=False)
    hidden = torch.randn(4, 8)
    losses, _ = head_cross_entropy(head, hidden, torch.randint(0, 20, (4,)))
    losses.sum().backward()
    assert head.weight.grad is not None


def test_under_bf16_autocast_the_head_multiplies_in_bf16_and_keeps_float32_outputs():
    generator = torch.Generator().manual_seed(0)
    head = nn.Linear(64, 500, bias=False).requires_grad_(False)
    with torch.no_grad():
        head.weight.copy_(torch.randn(500, 64, generator=generator) / 8)
    hidden = torch.randn(40, 64, generator=generator, requires_grad=True)
    targets = torch.randint(0, 500, (40,), generator=generator)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses, _ = head_cross_entropy(head, hidden, targets)
    losses.sum().backward()
    expected, _ = plain(head, hidden.detach(), targets, None)
    assert losses.dtype == torch.float32 and hidden.grad.dtype == torch.float32
    assert not torch.equal(losses, expected)  # bf16 products, not float32 ones
    assert torch.allclose(losses, expected, rtol=2e-2, atol=2e-2)
