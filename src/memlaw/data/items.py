"""Memory items: the key -> value pairs an adapter is asked to store verbatim."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MemoryItem:
    """One key and the value to recall from it.

    ``value_ids`` holds the exact answer tokens when the value was built in token space
    (random tokens); decoding those to text and re-tokenising would not give them back, so
    the encoder uses them directly and ``value`` is only their readable form.

    ``context`` holds the (role, content) turns before the answer when the item came from a
    conversation; the chat prompt is then those turns, and ``key`` is the last user turn.
    """

    key: str
    value: str
    value_ids: tuple[int, ...] | None = None
    context: tuple[tuple[str, str], ...] | None = None
