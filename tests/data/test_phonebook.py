import re

import pytest

from memlaw.data.phonebook import phonebook_items
from memlaw.errors import MemlawInputError


def test_phonebook_is_seeded_unique_and_well_formed():
    book = phonebook_items(500, seed=7)
    assert book == phonebook_items(500, seed=7)
    assert book != phonebook_items(500, seed=8)
    assert len({item.key for item in book}) == 500
    assert len({item.value for item in book}) == 500
    for item in book:
        assert re.fullmatch(r"[A-Z][a-z]+ [A-Z][A-Za-z]+:", item.key)
        assert re.fullmatch(r"[1-9]\d{9}", item.value)


def test_smaller_book_is_a_prefix_of_a_larger_one():
    assert phonebook_items(300, seed=1)[:100] == phonebook_items(100, seed=1)


def test_too_many_names_is_refused():
    with pytest.raises(MemlawInputError, match="distinct names"):
        phonebook_items(10**7)
