import math

import numpy as np
import pytest

from memlaw.data.longcontext import default_text, long_context_item, replacement_positions, sampleable_token_ids
from memlaw.errors import MemlawInputError


@pytest.mark.parametrize("ratio", [0.0, 0.2, 0.25, 0.4, 0.6, 0.8, 1 / 3, 1.0])
@pytest.mark.parametrize("length", [1, 7, 50, 64, 333, 1000])
def test_replacement_hits_exactly_round_rho_l_evenly_spaced_positions(ratio, length):
    positions = replacement_positions(length, ratio)
    assert len(positions) == math.floor(ratio * length + 0.5)
    assert len(set(positions.tolist())) == len(positions)
    assert positions.min(initial=0) >= 0 and positions.max(initial=0) < length
    if len(positions) > 2:
        gaps = np.diff(positions)
        # evenly spaced: gaps are the two integers around 1/rho
        assert gaps.max() - gaps.min() <= 1
        assert gaps.min() >= math.floor(1 / ratio) and gaps.max() <= math.ceil(1 / ratio)


@pytest.mark.parametrize("ratio", [0.2, 0.4, 0.6, 0.8])
def test_every_prefix_keeps_the_ratio(ratio):
    positions = replacement_positions(2000, ratio)
    for prefix in range(1, 2001):
        assert np.sum(positions < prefix) == math.floor(ratio * prefix + 0.5)


def test_matches_the_reference_pattern():
    assert replacement_positions(15, 0.2).tolist() == [2, 7, 12]
    assert replacement_positions(12, 0.4).tolist() == [1, 3, 6, 8, 11]
    assert replacement_positions(10, 0.6).tolist() == [0, 2, 4, 5, 7, 9]


def test_item_has_exactly_length_tokens_with_random_ones_at_the_positions(tokenizer):
    text_ids = tokenizer(default_text(), add_special_tokens=False).input_ids
    item = long_context_item(tokenizer, 200, 0.4, vocab_size=len(tokenizer), seed=3)
    assert len(item.value_ids) == 200
    positions = set(replacement_positions(200, 0.4).tolist())
    kept = [t for t in range(200) if t not in positions]
    assert [item.value_ids[t] for t in kept] == [text_ids[t] for t in kept]
    changed = sum(item.value_ids[t] != text_ids[t] for t in positions)
    assert changed >= 0.95 * len(positions)  # a random draw may rarely hit the original token


def test_pure_random_tokens_avoid_special_tokens_and_nest_across_lengths(tokenizer):
    short = long_context_item(tokenizer, 100, 1.0, vocab_size=len(tokenizer), seed=1)
    long = long_context_item(tokenizer, 400, 1.0, vocab_size=len(tokenizer), seed=1)
    assert long.value_ids[:100] == short.value_ids
    allowed = set(sampleable_token_ids(tokenizer, len(tokenizer)).tolist())
    assert set(long.value_ids) <= allowed
    assert not set(long.value_ids) & set(tokenizer.all_special_ids)
    other = long_context_item(tokenizer, 100, 1.0, vocab_size=len(tokenizer), seed=2)
    assert other.value_ids != short.value_ids


def test_partly_random_prefixes_nest(tokenizer):
    short = long_context_item(tokenizer, 120, 0.6, vocab_size=len(tokenizer))
    long = long_context_item(tokenizer, 500, 0.6, vocab_size=len(tokenizer))
    assert long.value_ids[:120] == short.value_ids


def test_bad_ratio_and_too_long_text(tokenizer):
    with pytest.raises(MemlawInputError, match="ratio"):
        long_context_item(tokenizer, 10, 1.5, vocab_size=len(tokenizer))
    with pytest.raises(MemlawInputError, match="longer than the text"):
        long_context_item(tokenizer, 100, 0.5, vocab_size=len(tokenizer), text="only a few words")
