"""What the base model already knows of a user's file: every answer token's loss before training.

The file is encoded exactly as ``memlaw probe`` and ``memlaw train`` encode it (same prompt
format, same cut), and one teacher-forced pass of the frozen base model gives each answer
token's initial loss. A plan for the file uses their mean, and per item prefixes of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from memlaw.data.encoding import EncodedData
from memlaw.measure.teacher_forced import evaluate_tokens
from memlaw.models.loading import LoadedModel
from memlaw.probe.config import ProbeConfig
from memlaw.probe.data import prepare


@dataclass(frozen=True)
class ContentLosses:
    """Per item, in file order: answer tokens and their summed initial loss (nats)."""

    keys: tuple[str, ...]
    item_lengths: np.ndarray
    item_loss_sums: np.ndarray

    @property
    def length(self) -> int:
        return int(self.item_lengths.sum())

    @property
    def initial_loss(self) -> float:
        """Mean initial loss per answer token of the whole file."""
        return float(self.item_loss_sums.sum() / self.length)

    def prefixes(self) -> tuple[np.ndarray, np.ndarray]:
        """(answer tokens, mean initial loss) of the first k items, for k = 1 … n."""
        lengths = np.cumsum(self.item_lengths)
        return lengths, np.cumsum(self.item_loss_sums) / lengths


def content_losses(config: ProbeConfig, loaded: LoadedModel | None = None) -> ContentLosses:
    """The initial losses of ``config.data`` (a file) under ``config``'s model and prompt format
    (the model is loaded unless ``loaded`` is given)."""
    loaded, data = prepare(config, loaded)
    return data_losses(loaded, data, config.eval_batch_size)


def data_losses(loaded: LoadedModel, data: EncodedData, batch_size: int) -> ContentLosses:
    """The initial losses of items already encoded, under ``loaded``'s base model."""
    tokens = evaluate_tokens(loaded.model, data, pad_id=loaded.tokenizer.pad_token_id, batch_size=batch_size).of_copy(0)
    items = len(data.items)
    # answer tokens only: an end token is supervised but not counted in ℓ
    answer = tokens.position < torch.tensor([len(item.answer_ids) for item in data.items])[tokens.item_index]
    index = tokens.item_index[answer]
    sums = torch.zeros(items, dtype=torch.float64).index_add_(0, index, tokens.losses[answer].double())
    counts = torch.bincount(index, minlength=items)
    return ContentLosses(tuple(item.key for item in data.items), counts.numpy(), sums.numpy())
