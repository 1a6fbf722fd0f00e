"""User files: JSONL records of key/value pairs, or a plain text as one long item."""

from __future__ import annotations

import json
from pathlib import Path

from memlaw.constants import LONG_CONTEXT_PROMPT
from memlaw.data.items import MemoryItem
from memlaw.data.longcontext import read_text
from memlaw.errors import MemlawInputError

#: Accepted (key field, value field) pairs, in the order they are looked for.
FIELD_PAIRS = (("key", "value"), ("query", "target"), ("prompt", "completion"))


def load_items(path: str | Path) -> list[MemoryItem]:
    """JSONL (``.jsonl``/``.json`` lines) as records; any other file as one plain-text item."""
    source = Path(path)
    if not source.is_file():
        raise MemlawInputError(f"data file not found: {source} (give phonebook, longcontext or a JSONL/text file)")
    if source.suffix.lower() in (".jsonl", ".json"):
        return _load_jsonl(source)
    return [MemoryItem(key=LONG_CONTEXT_PROMPT, value=read_text(source))]


def _load_jsonl(source: Path) -> list[MemoryItem]:
    items: list[MemoryItem] = []
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise MemlawInputError(f"{source} is not UTF-8 text ({err.reason} at byte {err.start})") from err
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise MemlawInputError(f"{source}:{number}: not valid JSON ({err.msg} at column {err.colno})") from err
        items.append(_record_item(record, f"{source}:{number}"))
    if not items:
        raise MemlawInputError(f"{source} has no records")
    return items


def _record_item(record: object, where: str) -> MemoryItem:
    if not isinstance(record, dict):
        raise MemlawInputError(f"{where}: expected a JSON object, got {type(record).__name__}")
    for key_field, value_field in FIELD_PAIRS:
        if key_field in record and value_field in record:
            key, value = record[key_field], record[value_field]
            for field, content in ((key_field, key), (value_field, value)):
                if not isinstance(content, (str, int)) or isinstance(content, bool):
                    raise MemlawInputError(f"{where}: field '{field}' must be a string, got {type(content).__name__}")
            if str(value) == "":
                raise MemlawInputError(f"{where}: field '{value_field}' is empty: there is nothing to memorise")
            return MemoryItem(key=str(key), value=str(value))
    wanted = ", ".join(f"{k}/{v}" for k, v in FIELD_PAIRS)
    raise MemlawInputError(f"{where}: expected fields {wanted}; found {', '.join(sorted(record)) or 'none'}")
