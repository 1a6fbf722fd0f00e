"""Batched greedy decoding from each item's prompt, as long as its answer.

Greedy decoding agrees with teacher forcing up to the first answer position whose
teacher-forced argmax is wrong: until then its prefix *is* the answer, so it picks the same
argmax. ``greedy_answers`` therefore takes, per copy and item, the position to start from (the
first teacher-forced error, or the answer's length when there is none), copies the answer up
to there and decodes only the rest. A memorised item costs no decoding at all; at ℓ = 128 full
decoding costs as much as about 20 training steps (benchmarks/small_probes.py).
"""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

from memlaw.data.encoding import EncodedData, end_of_answer


@torch.inference_mode()
def greedy_answers(
    model: PreTrainedModel,
    data: EncodedData,
    *,
    pad_id: int,
    batch_size: int = 32,
    copies: int = 1,
    starts: list[list[int]] | None = None,
) -> list[list[list[int]]]:
    """For every adapter copy and item, the first len(answer) tokens greedy decoding produces (the
    answer's end token included, when it is trained).

    ``starts[j][i]``: the answer position from which copy j must really decode item i (default
    0: everything); the answer stands before it. Decoding never stops at EOS: an early EOS is
    itself an error at that position, and the comparison needs a token for every answer
    position. With K stacked copies each batch holds the same items K times, one block per copy.
    """
    answers = [list(item.supervised_ids) for item in data.items]
    starts = starts or [[0] * len(answers) for _ in range(copies)]
    outputs = [[answers[i][: starts[j][i]] for i in range(len(answers))] for j in range(copies)]
    # items some copy must decode; a copy that need not decode one rides along and is ignored
    pending = [i for i in range(len(answers)) if any(starts[j][i] < len(answers[i]) for j in range(copies))]
    for first in range(0, len(pending), batch_size):
        chunk = pending[first : first + batch_size]
        rows = [(j, i) for j in range(copies) for i in chunk]
        prompts = [list(data.items[i].prompt_ids) + answers[i][: starts[j][i]] for j, i in rows]
        width = max(len(prompt) for prompt in prompts)
        input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):  # left padding: every prompt ends where decoding starts
            input_ids[row, width - len(prompt) :] = torch.tensor(prompt)
            attention[row, width - len(prompt) :] = 1
        generated = model.generate(
            input_ids=input_ids.to(model.device),
            attention_mask=attention.to(model.device),
            do_sample=False,
            max_new_tokens=max(len(answers[i]) - starts[j][i] for j, i in rows) or 1,
            eos_token_id=[],  # an empty list turns stopping off; None would fall back to the model's EOS
            pad_token_id=pad_id,
        )[:, width:].cpu()
        for row, (j, i) in enumerate(rows):
            outputs[j][i] = outputs[j][i] + generated[row, : len(answers[i]) - starts[j][i]].tolist()
    return outputs


@torch.inference_mode()
def greedy_reply(
    model: PreTrainedModel, tokenizer, prompt_ids: list[int], prompt_format: str, max_new_tokens: int
) -> str:
    """What ``memlaw ask`` prints: greedy decoding from ``prompt_ids`` until the token that ends a
    trained answer (``end_of_answer``) or the model's own end of sequence, special tokens dropped."""
    ends = list(end_of_answer(tokenizer, prompt_format))
    if tokenizer.eos_token_id is not None:
        ends.append(tokenizer.eos_token_id)
    input_ids = torch.tensor([prompt_ids], device=model.device)
    generated = model.generate(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        do_sample=False,
        max_new_tokens=max_new_tokens,
        eos_token_id=ends,
        pad_token_id=tokenizer.pad_token_id,
    )[0, input_ids.shape[1] :]
    return tokenizer.decode(generated, skip_special_tokens=True)
