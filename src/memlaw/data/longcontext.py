"""Long-context stress test: one document with a ratio rho of its tokens replaced at random.

Replacement positions follow the reference's deterministic, evenly spread pattern: token i
is replaced when round((i + 1) * rho) > round(i * rho) (rounding half up). Every prefix of
n tokens then holds exactly round(n * rho) replaced tokens, so a shorter document is a
prefix of a longer one with the same ratio. The reference's files match this pattern
(rho = 0.2 -> 2, 7, 12, ...; rho = 0.4 -> 1, 3, 6, 8, 11, ...).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
from transformers import PreTrainedTokenizerBase

from memlaw.constants import LONG_CONTEXT_PROMPT
from memlaw.data.items import MemoryItem
from memlaw.errors import MemlawInputError
from memlaw.io import read_user_text

#: Chapters 1-10 of Jane Austen's "Pride and Prejudice" (1813, public domain).
DEFAULT_TEXT = "pride_and_prejudice_ch1-10.txt"


def replacement_positions(length: int, ratio: float) -> np.ndarray:
    """Indices in [0, length) to replace; exactly floor(n * ratio + 0.5) fall in any prefix n."""
    counts = np.floor(np.arange(length + 1) * ratio + 0.5).astype(np.int64)
    return np.flatnonzero(np.diff(counts) > 0)


def sampleable_token_ids(tokenizer: PreTrainedTokenizerBase, vocab_size: int) -> np.ndarray:
    """Ordinary vocabulary ids: no special or added control tokens (EOS would end decoding)."""
    special = set(tokenizer.all_special_ids)
    special.update(i for i, tok in tokenizer.added_tokens_decoder.items() if tok.special)
    ids = np.arange(min(vocab_size, len(tokenizer)))
    return ids[~np.isin(ids, sorted(special))]


def default_text() -> str:
    return resources.files("memlaw.data.texts").joinpath(DEFAULT_TEXT).read_text(encoding="utf-8")


def read_text(path: str | Path) -> str:
    text = read_user_text(path, "text file not found")
    if not text.strip():
        raise MemlawInputError(f"{path} is empty")
    return text


def long_context_item(
    tokenizer: PreTrainedTokenizerBase,
    length: int,
    ratio: float,
    *,
    vocab_size: int,
    text: str | None = None,
    seed: int = 0,
    key: str = LONG_CONTEXT_PROMPT,
) -> MemoryItem:
    """One item whose value is ``length`` tokens: a text prefix with ``ratio`` of them random.

    ``ratio`` = 1 needs no text: every token is drawn uniformly from the ordinary vocabulary.
    The random draws are seeded per position order, so prefixes nest across lengths.
    """
    if not 0.0 <= ratio <= 1.0:
        raise MemlawInputError(f"ratio must be within [0, 1], got {ratio}")
    if length <= 0:
        raise MemlawInputError(f"length must be a positive number of tokens, got {length}")
    positions = replacement_positions(length, ratio)
    if len(positions) == length:
        ids = np.zeros(length, dtype=np.int64)
    else:
        source = default_text() if text is None else text
        ids = np.asarray(tokenizer(source, add_special_tokens=False).input_ids, dtype=np.int64)
        if len(ids) < length:
            raise MemlawInputError(
                f"length {length} is longer than the text ({len(ids)} tokens): use a longer text= or a smaller length="
            )
        ids = ids[:length].copy()
    rng = np.random.default_rng(seed)
    # Draw one candidate for every position so a prefix's tokens do not depend on ``length``.
    candidates = rng.choice(sampleable_token_ids(tokenizer, vocab_size), size=length)
    ids[positions] = candidates[positions]
    value_ids = tuple(int(i) for i in ids)
    return MemoryItem(key=key, value=tokenizer.decode(value_ids), value_ids=value_ids)
