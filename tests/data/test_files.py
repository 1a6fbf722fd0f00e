import json

import pytest

from memlaw.constants import LONG_CONTEXT_PROMPT
from memlaw.data.encoding import encode_items
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
        (['{"key": "a", "value": " \\t "}'], r"d\.jsonl:1: field 'value' is empty or blank"),
        (['{"key": "a", "value": null}'], r"d\.jsonl:1: field 'value' must be a string, got NoneType"),
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


CONVERSATION = [
    {"role": "system", "content": "You answer about the office."},
    {"role": "user", "content": "Where is the printer?"},
    {"role": "assistant", "content": "Room B2."},
    {"role": "user", "content": "And the scanner?"},
    {"role": "assistant", "content": "Next to it, in room B2 as well."},
]


def test_conversations_answer_with_their_last_assistant_turn(tmp_path, tokenizer):
    path = write(tmp_path / "chat.jsonl", [json.dumps({"messages": CONVERSATION})])
    (item,) = load_items(path)
    assert item.key == "And the scanner?" and item.value == "Next to it, in room B2 as well."
    (encoded,) = encode_items([item], tokenizer, system_prompt="ignored: the record has its own").items
    # the prompt is the chat template of every earlier turn, exactly as TRL renders it
    prompt = tokenizer.apply_chat_template(CONVERSATION[:-1], tokenize=False, add_generation_prompt=True)
    assert encoded.prompt_ids == tuple(tokenizer(prompt, add_special_tokens=False).input_ids)
    assert encoded.answer_ids == tuple(tokenizer(item.value, add_special_tokens=False).input_ids)
    # without a system turn, the configured system prompt opens the conversation, as for key/value records
    (plain,) = load_items(write(tmp_path / "c2.jsonl", [json.dumps({"messages": CONVERSATION[1:3]})]))
    (encoded,) = encode_items([plain], tokenizer, system_prompt="Be brief.").items
    turns = [{"role": "system", "content": "Be brief."}, CONVERSATION[1]]
    prompt = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    assert encoded.prompt_ids == tuple(tokenizer(prompt, add_special_tokens=False).input_ids)
    with pytest.raises(MemlawInputError, match="need the chat prompt format"):
        encode_items([plain], tokenizer, prompt_format="raw")


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ([{"role": "user", "content": "hi"}], "no assistant turn"),
        ([{"role": "assistant", "content": "hi"}], "answers no user turn"),
        ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}], "is empty"),
        (
            [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "?"},
            ],
            "ends with a user turn after the last assistant turn, which would be dropped",
        ),
        ([{"role": "robot", "content": "hi"}], "turn 1 of 'messages' must be"),
        ("hello", "non-empty list"),
    ],
)
def test_malformed_conversations_say_what_is_wrong(tmp_path, messages, message):
    path = write(tmp_path / "chat.jsonl", [json.dumps({"messages": messages})])
    with pytest.raises(MemlawInputError, match=message):
        load_items(path)


def test_csv_and_parquet_records_with_named_columns(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = {"name": ["Ada", "Bob"], "born": ["1815", "1912"], "note": ["x", "y"]}
    csv_path = tmp_path / "people.csv"
    csv_path.write_text("name,born,note\nAda,1815,x\nBob,1912,y\n", encoding="utf-8")
    parquet_path = tmp_path / "people.parquet"
    pq.write_table(pa.table(rows), parquet_path)
    for path in (csv_path, parquet_path):
        items = load_items(path, ["name", "born"])
        assert [(i.key, i.value) for i in items] == [("Ada", "1815"), ("Bob", "1912")]
        with pytest.raises(MemlawInputError, match=r"row \d+: expected fields .* fields= KEY,VALUE"):
            load_items(path)
        with pytest.raises(MemlawInputError, match="no field year"):
            load_items(path, ["name", "year"])
    detected = tmp_path / "qa.csv"
    detected.write_text("query,target\nWho?,Ada\n", encoding="utf-8")
    assert [(i.key, i.value) for i in load_items(detected)] == [("Who?", "Ada")]


def test_bad_tables_and_fields_are_one_clear_error(tmp_path):
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    with pytest.raises(MemlawInputError, match="could not be read as PARQUET"):
        load_items(broken)
    text = write(tmp_path / "notes.txt", ["hello"])
    with pytest.raises(MemlawInputError, match="read as plain text"):
        load_items(text, ["a", "b"])
    with pytest.raises(MemlawInputError, match="two column names"):
        load_items(write(tmp_path / "d.jsonl", ['{"a": "1", "b": "2"}']), ["a"])


def test_spreadsheet_exports_with_a_byte_order_mark_read_as_without(tmp_path):
    bom = "\ufeff"
    csv_path = tmp_path / "export.csv"
    csv_path.write_text(bom + "key,value\nAda,1815\n", encoding="utf-8")
    jsonl_path = tmp_path / "export.jsonl"
    jsonl_path.write_text(bom + json.dumps({"key": "Ada", "value": "1815"}) + "\n", encoding="utf-8")
    text_path = tmp_path / "export.txt"
    text_path.write_text(bom + "Line one.\n", encoding="utf-8")
    for path in (csv_path, jsonl_path):
        assert [(i.key, i.value) for i in load_items(path)] == [("Ada", "1815")]
    assert load_items(text_path)[0].value == "Line one.\n"


def test_a_column_named_twice_is_refused(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("key,value,value\nAda,1815,1816\n", encoding="utf-8")
    with pytest.raises(MemlawInputError, match="the header names value more than once"):
        load_items(table)
    with pytest.raises(MemlawInputError, match="names the column 'key' twice"):
        load_items(write(tmp_path / "d.jsonl", ['{"key": "1", "value": "2"}']), ["key", "key"])
