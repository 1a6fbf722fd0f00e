"""Output head and cross-entropy fused, in chunks: vocabulary-sized logits never all exist at once.

For a frozen head the only gradient needed is d loss / d hidden = (softmax - onehot) · W,
which is computed chunk by chunk during the forward pass and kept as an (N, d) tensor; the
(N, V) logits and their gradient are never held in memory together, whatever N is. With K
adapters trained in one pass, N = K · ℓ, and this is what keeps memory and memory traffic
close to a single probe's.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.weak import WeakIdKeyDictionary

#: Rows of logits per chunk: (512, 49152) float32 is 100 MB. Fewer rows re-read the head weight more
#: often per row (measured on 2 CPU cores: 1.5 ms per row at 32 rows, 0.84 ms at 512).
CHUNK_ROWS = 512


class _FusedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, softcap, chunk):  # type: ignore[override]
        rows, grad_dtype = hidden.shape[0], hidden.dtype
        device = hidden.device.type
        if torch.is_autocast_enabled(device):  # under bf16 autocast the head multiplies in bf16 too
            weight = _weight_in(weight, torch.get_autocast_dtype(device))
            hidden = hidden.to(weight.dtype)
        losses = torch.empty(rows, dtype=torch.float32, device=hidden.device)
        correct = torch.empty(rows, dtype=torch.bool, device=hidden.device)
        grad_hidden = (
            torch.empty(hidden.shape, dtype=grad_dtype, device=hidden.device) if ctx.needs_input_grad[0] else None
        )
        # One logits buffer reused by every chunk, everything in place: on CPU a fresh 100 MB
        # tensor per chunk costs more in page faults than the arithmetic on it.
        buffer = torch.empty((min(chunk, rows), weight.shape[0]), dtype=torch.float32, device=hidden.device)
        for start in range(0, rows, chunk):
            part = slice(start, min(start + chunk, rows))
            target = targets[part]
            logits = buffer[: part.stop - start]
            _logits_into(logits, hidden[part], weight, bias)
            if softcap:
                capped = torch.tanh(logits / softcap)
                logits.copy_(capped).mul_(softcap)
            top, best = logits.max(dim=-1)
            correct[part] = best == target
            logits.sub_(top[:, None])
            target_logit = logits.gather(1, target[:, None]).squeeze(1)
            total = logits.exp_().sum(dim=-1)
            losses[part] = torch.log(total) - target_logit
            if grad_hidden is not None:
                grad = logits.div_(total[:, None])  # softmax
                grad[torch.arange(len(target), device=grad.device), target] -= 1
                if softcap:  # chain rule through cap·tanh(z / cap)
                    grad *= 1 - capped**2
                grad_hidden[part] = grad.to(weight.dtype) @ weight
        ctx.save_for_backward(grad_hidden if grad_hidden is not None else torch.empty(0))
        ctx.mark_non_differentiable(correct)
        return losses, correct

    @staticmethod
    def backward(ctx, grad_losses, grad_correct):  # type: ignore[override]
        (grad_hidden,) = ctx.saved_tensors
        return grad_hidden * grad_losses[:, None].to(grad_hidden.dtype), None, None, None, None, None


#: Low-precision copies of frozen head weights, made once per weight (and per in-place change).
_WEIGHT_COPIES: WeakIdKeyDictionary = WeakIdKeyDictionary()


def _weight_in(weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``weight`` in ``dtype``, cast once rather than at every step (a 49k × 576 head is 28 M values)."""
    if weight.dtype == dtype:
        return weight
    version, copy = _WEIGHT_COPIES.get(weight, (-1, None))
    if copy is None or version != weight._version or copy.dtype != dtype:
        copy = weight.detach().to(dtype)
        _WEIGHT_COPIES[weight] = (weight._version, copy)
    return copy


def _logits_into(out: torch.Tensor, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    """Logits in the head's own precision, written into the float32 buffer ``out``."""
    if weight.dtype != out.dtype:  # a bf16/fp16 head: multiply in its dtype, as the plain head would
        out.copy_(nn.functional.linear(hidden, weight, bias))
    elif bias is None:
        torch.mm(hidden, weight.T, out=out)
    else:
        torch.addmm(bias, hidden, weight.T, out=out)


def head_cross_entropy(
    head: nn.Module,
    hidden: torch.Tensor,
    targets: torch.Tensor,
    *,
    softcap: float | None = None,
    chunk: int = CHUNK_ROWS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row cross-entropy (float32) of ``head(hidden)`` against ``targets``, and argmax == target.

    Differentiable with respect to ``hidden``. A trainable head (a LoRA on ``lm_head``) takes the
    plain path, since its weight gradient needs the full logits.
    """
    weight, bias = head.weight, getattr(head, "bias", None)
    if not isinstance(head, nn.Linear) or weight.requires_grad or (bias is not None and bias.requires_grad):
        logits = head(hidden).float()
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        losses = nn.functional.cross_entropy(logits, targets, reduction="none")
        return losses, logits.argmax(dim=-1) == targets
    return _FusedLinearCrossEntropy.apply(hidden, weight, bias, targets, softcap, chunk)
