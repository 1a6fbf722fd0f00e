"""Memory data: generators (PhoneBook, long context), user files, and their encoding."""

from memlaw.data.encoding import Batch, EncodedData, EncodedItem, encode_items, make_batch
from memlaw.data.files import load_items
from memlaw.data.items import MemoryItem
from memlaw.data.longcontext import long_context_item, replacement_positions
from memlaw.data.phonebook import phonebook_items

__all__ = [
    "Batch",
    "EncodedData",
    "EncodedItem",
    "MemoryItem",
    "encode_items",
    "load_items",
    "long_context_item",
    "make_batch",
    "phonebook_items",
    "replacement_positions",
]
