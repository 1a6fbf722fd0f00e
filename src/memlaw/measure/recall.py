"""One measurement of recall: teacher-forced token statistics plus (optionally) greedy decoding.

``certified`` means every answer token has teacher-forced p > 0.5. Then each target token is
the unique argmax given the correct prefix, so greedy decoding reproduces every item
verbatim by induction over positions: certified implies exact match (paper §4.2).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.profiler import record_function
from transformers import PreTrainedModel

from memlaw.constants import CERTIFY_LOSS
from memlaw.data.encoding import EncodedData
from memlaw.engine.prefix_cache import PrefixCache
from memlaw.measure.greedy import greedy_answers
from memlaw.measure.teacher_forced import TokenLosses, evaluate_tokens


@dataclass
class GreedyRecall:
    """Free-running greedy decoding compared with the answers, position by position."""

    item_exact: list[bool]
    item_first_error: list[int | None]  # first answer position where decoding diverges
    item_matched: list[int]  # positions equal to the answer (after a divergence they rarely are)
    item_decoded: list[list[int]]  # the greedy output of each item, as many tokens as its answer

    @property
    def exact_match(self) -> float:
        return sum(self.item_exact) / len(self.item_exact)

    def token_accuracy(self, lengths: list[int]) -> float:
        return sum(self.item_matched) / sum(lengths)

    @property
    def first_error(self) -> dict[str, int] | None:
        """The first item (in data order) that is not recalled, and where it diverges."""
        for item, position in enumerate(self.item_first_error):
            if position is not None:
                return {"item": item, "position": position}
        return None


@dataclass
class RecallMeasurement:
    """Teacher-forced statistics of every supervised token. Loss, share above p = 0.5 and argmax
    accuracy are over the answer tokens (the law's ℓ); certification and greedy recall also
    cover each answer's end token, when it is trained."""

    tokens: TokenLosses
    lengths: list[int]  # supervised tokens per item
    greedy: GreedyRecall | None
    answer: torch.Tensor  # per supervised token: True for an answer token, False for an end token

    @property
    def loss(self) -> float:
        """Mean nats per answer token (a token-weighted mean over items)."""
        return float(self.tokens.losses[self.answer].double().mean())

    @property
    def frac_above_half(self) -> float:
        return float((self.tokens.losses[self.answer] < CERTIFY_LOSS).double().mean())

    @property
    def argmax_accuracy(self) -> float:
        return float(self.tokens.correct[self.answer].double().mean())

    @property
    def certified(self) -> bool:
        return bool((self.tokens.losses < CERTIFY_LOSS).all())

    def item_losses(self) -> list[torch.Tensor]:
        """Teacher-forced per-token losses of each item, in answer order."""
        return list(self.tokens.losses.split(self.lengths))


def measure_recall(
    model: PreTrainedModel,
    data: EncodedData,
    *,
    pad_id: int,
    batch_size: int = 16,
    decode_batch_size: int = 32,
    greedy: bool = True,
    cache: PrefixCache | None = None,
    copies: int = 1,
) -> list[RecallMeasurement]:
    """One measurement per adapter copy (a single adapter is one copy)."""
    tokens = evaluate_tokens(model, data, pad_id=pad_id, batch_size=batch_size, cache=cache, copies=copies)
    lengths = data.supervised_lengths
    answers = [list(item.supervised_ids) for item in data.items]
    per_copy = [tokens.of_copy(j) for j in range(copies)]
    decoded: list[GreedyRecall | None] = [None] * copies
    if greedy:
        starts = [first_argmax_errors(copy_tokens, lengths) for copy_tokens in per_copy]
        with record_function("memlaw.greedy"):
            generated = greedy_answers(
                model, data, pad_id=pad_id, batch_size=decode_batch_size, copies=copies, starts=starts
            )
        decoded = [compare_answers(outputs, answers) for outputs in generated]
    answer = torch.tensor(
        [part for item in data.items for part in [True] * len(item.answer_ids) + [False] * len(item.end_ids)],
        device=tokens.losses.device,
    )
    return [RecallMeasurement(per_copy[j], lengths, decoded[j], answer) for j in range(copies)]


def first_argmax_errors(tokens: TokenLosses, lengths: list[int]) -> list[int]:
    """Per item, the first answer position whose teacher-forced argmax is wrong (its length if none):
    greedy decoding reproduces the answer up to there (``measure.greedy``)."""
    return [
        int(torch.nonzero(~correct)[0]) if not bool(correct.all()) else len(correct)
        for correct in tokens.correct.split(lengths)
    ]


def compare_answers(generated: list[list[int]], answers: list[list[int]]) -> GreedyRecall:
    exact, first_error, matched = [], [], []
    for output, answer in zip(generated, answers, strict=True):
        same = torch.tensor(output) == torch.tensor(answer)
        wrong = torch.nonzero(~same)
        exact.append(bool(same.all()))
        first_error.append(int(wrong[0]) if len(wrong) else None)
        matched.append(int(same.sum()))
    return GreedyRecall(exact, first_error, matched, [list(output) for output in generated])
