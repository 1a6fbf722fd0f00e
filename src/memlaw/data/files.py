"""User files: records of question/answer pairs (JSONL, CSV, Parquet) or a plain text as one item.

JSONL records hold key/value, query/target or prompt/completion fields, or TRL's
conversational ``{"messages": [...]}`` form, whose last assistant turn is the answer and
whose earlier turns are the prompt. CSV and Parquet files go through the ``datasets``
library's local loaders and name their columns the same way. ``fields`` (KEY, VALUE) picks
other columns. Any other file is one plain-text item.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from memlaw.constants import LONG_CONTEXT_PROMPT
from memlaw.data.items import MemoryItem
from memlaw.data.longcontext import read_text
from memlaw.errors import MemlawInputError
from memlaw.io import check_input_file, read_user_text

#: Accepted (key field, value field) pairs, in the order they are looked for.
FIELD_PAIRS = (("key", "value"), ("query", "target"), ("prompt", "completion"))
#: TRL's conversational records: a list of {"role", "content"} turns.
MESSAGES = "messages"
JSONL_SUFFIXES = (".jsonl", ".json")
#: Table files and the ``datasets`` loader that reads each.
TABLE_LOADERS = {".csv": "from_csv", ".parquet": "from_parquet"}
ROLES = ("system", "user", "assistant")


def load_items(path: str | Path, fields: Sequence[str] | None = None) -> list[MemoryItem]:
    """The file's items, in file order: records of JSONL/CSV/Parquet, or one plain-text item."""
    source = check_input_file(
        path, "data file not found (give phonebook, longcontext or a JSONL, CSV, Parquet or text file)"
    )
    if fields is not None and len(fields) != 2:
        raise MemlawInputError(f"fields takes two column names, KEY,VALUE; got {len(fields)}: {','.join(fields)}")
    if fields is not None and fields[0] == fields[1]:
        raise MemlawInputError(f"fields names the column {fields[0]!r} twice: give the KEY and VALUE columns")
    suffix = source.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        records = _jsonl_records(source)
    elif suffix in TABLE_LOADERS:
        records = _table_records(source, TABLE_LOADERS[suffix])
    elif fields is not None:
        raise MemlawInputError(f"fields apply to JSONL, CSV and Parquet files; {source} is read as plain text")
    else:
        return [MemoryItem(key=LONG_CONTEXT_PROMPT, value=read_text(source))]
    items = [_record_item(record, where, fields) for where, record in records]
    if not items:
        raise MemlawInputError(f"{source} has no records")
    return items


def _jsonl_records(source: Path) -> Iterable[tuple[str, object]]:
    lines = read_user_text(source, "data file not found").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield f"{source}:{number}", json.loads(line)
        except json.JSONDecodeError as err:
            raise MemlawInputError(f"{source}:{number}: not valid JSON ({err.msg} at column {err.colno})") from err


def _table_records(source: Path, loader: str) -> list[tuple[str, object]]:
    import datasets

    options = {}
    if loader == "from_csv":
        _check_csv_header(source)
        options["encoding"] = "utf-8-sig"  # a byte-order mark would end up in the first column's name
    datasets.disable_progress_bars()
    # it logs failures (as errors) before raising them; the raise is reported, in one line
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    try:
        table = getattr(datasets.Dataset, loader)(str(source), keep_in_memory=True, **options)
    except Exception as err:  # the loaders raise pyarrow's, pandas' or their own errors
        raise MemlawInputError(f"{source} could not be read as {source.suffix[1:].upper()}: {err}") from err
    # CSV rows are numbered from the header line; Parquet rows from 1
    first = 2 if loader == "from_csv" else 1
    return [(f"{source} row {first + index}", record) for index, record in enumerate(table)]


def _check_csv_header(source: Path) -> None:
    """What the CSV loader would misreport: no rows (it names a "train" split), or a column named
    twice (pandas renames the second ``name.1``)."""
    rows = csv.reader(read_user_text(source, "data file not found").splitlines())
    header = next(rows, None)
    if not header:
        raise MemlawInputError(f"{source} is empty: give a header line and one record per line")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise MemlawInputError(f"{source}: the header names {', '.join(repeated)} more than once: rename the columns")
    if not any(any(cell.strip() for cell in row) for row in rows):
        raise MemlawInputError(f"{source} has no records (a header line only)")


def _record_item(record: object, where: str, fields: Sequence[str] | None) -> MemoryItem:
    if not isinstance(record, dict):
        raise MemlawInputError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if fields is not None:
        missing = [name for name in fields if name not in record]
        if missing:
            raise MemlawInputError(
                f"{where}: no field {', '.join(missing)} (fields here: {', '.join(sorted(record)) or 'none'})"
            )
        return _pair_item(record, *fields, where)
    for key_field, value_field in FIELD_PAIRS:
        if key_field in record and value_field in record:
            return _pair_item(record, key_field, value_field, where)
    if MESSAGES in record:
        return _conversation_item(record[MESSAGES], where)
    wanted = ", ".join(f"{k}/{v}" for k, v in FIELD_PAIRS)
    raise MemlawInputError(
        f"{where}: expected fields {wanted} or {MESSAGES} (or name yours with fields= KEY,VALUE); "
        f"found {', '.join(sorted(record)) or 'none'}"
    )


def _pair_item(record: dict, key_field: str, value_field: str, where: str) -> MemoryItem:
    key, value = record[key_field], record[value_field]
    for field, content in ((key_field, key), (value_field, value)):
        if not isinstance(content, (str, int)) or isinstance(content, bool):
            raise MemlawInputError(f"{where}: field '{field}' must be a string, got {type(content).__name__}")
    if not str(value).strip():
        raise MemlawInputError(f"{where}: field '{value_field}' is empty or blank: there is nothing to memorise")
    return MemoryItem(key=str(key), value=str(value))


def _conversation_item(messages: object, where: str) -> MemoryItem:
    """The last assistant turn is the answer; the turns before it are the prompt."""
    if not isinstance(messages, list) or not messages:
        raise MemlawInputError(f"{where}: '{MESSAGES}' must be a non-empty list of {{role, content}} turns")
    turns = []
    for number, turn in enumerate(messages, start=1):
        if not isinstance(turn, dict) or turn.get("role") not in ROLES or not isinstance(turn.get("content"), str):
            raise MemlawInputError(
                f'{where}: turn {number} of \'{MESSAGES}\' must be {{"role": {"|".join(ROLES)}, "content": text}}'
            )
        turns.append((turn["role"], turn["content"]))
    answers = [index for index, (role, _) in enumerate(turns) if role == "assistant"]
    if not answers:
        raise MemlawInputError(f"{where}: '{MESSAGES}' has no assistant turn: there is nothing to memorise")
    last = answers[-1]
    if last != len(turns) - 1:
        raise MemlawInputError(
            f"{where}: '{MESSAGES}' ends with a {turns[-1][0]} turn after the last assistant turn, which would be "
            "dropped: end each conversation with the assistant turn to memorise"
        )
    context, answer = tuple(turns[:last]), turns[last][1]
    if not any(role == "user" for role, _ in context):
        raise MemlawInputError(f"{where}: the last assistant turn of '{MESSAGES}' answers no user turn")
    if not answer.strip():
        raise MemlawInputError(f"{where}: the last assistant turn is empty or blank: there is nothing to memorise")
    question = next(content for role, content in reversed(context) if role == "user")
    return MemoryItem(key=question, value=answer, context=context)
