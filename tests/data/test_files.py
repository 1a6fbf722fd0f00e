import json

import pytest

from memlaw.constants import LONG_CONTEXT_PROMPT
from memlaw.data.files import load_items
from memlaw.errors import MemlawInputError


def write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("fields", [("key", "value"), ("query", "target"), ("prompt", "completion")])
def test_jsonl_accepts_the_three_field_conventions(tmp_path, fields):
    k, v = fields
    path = write(tmp_path / "d.jsonl", [json.dumps({k: "Ada:", v: "1815"}), "", json.dumps({k: "Bob:", v: 42})])
    items = load_items(path)
    assert [(i.key, i.value) for i in items] == [("Ada:", "1815"), ("Bob:", "42")]


def test_plain_text_is_one_item_with_the_fixed_key(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("Line one.\nLine two.\n", encoding="utf-8")
    (item,) = load_items(path)
    assert item.key == LONG_CONTEXT_PROMPT and item.value == "Line one.\nLine two.\n"


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"key": "a", "value": "b"}', '{"key": "a", "value": '], r"d\.jsonl:2: not valid JSON"),
        (['{"key": "a", "value": "b"}', "", '{"name": "a"}'], r"d\.jsonl:3: expected fields key/value"),
        (['["a", "b"]'], r"d\.jsonl:1: expected a JSON object"),
        (['{"key": "a", "value": ["b"]}'], r"d\.jsonl:1: field 'value' must be a string"),
        (['{"key": "a", "value": ""}'], r"d\.jsonl:1: field 'value' is empty"),
        (["", "  "], r"has no records"),
    ],
)
def test_malformed_jsonl_names_the_line(tmp_path, lines, message):
    with pytest.raises(MemlawInputError, match=message):
        load_items(write(tmp_path / "d.jsonl", lines))


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(MemlawInputError, match="not found"):
        load_items(tmp_path / "nope.jsonl")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(MemlawInputError, match="empty"):
        load_items(empty)
