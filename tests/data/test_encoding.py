import pytest

from memlaw.data import MemoryItem, encode_items, make_batch, phonebook_items
from memlaw.data.encoding import end_of_answer
from memlaw.errors import MemlawInputError


def test_length_counts_answer_tokens_with_the_models_tokenizer(tokenizer):
    items = phonebook_items(7, seed=0) + [MemoryItem("Motto:", " It is a truth universally acknowledged")]
    data = encode_items(items, tokenizer)
    expected = sum(len(tokenizer(i.value, add_special_tokens=False).input_ids) for i in items)
    assert data.length == expected
    assert [len(e.answer_ids) for e in data.items[:7]] == [10] * 7  # SmolLM2 splits digits


@pytest.mark.parametrize("length", [1, 9, 10, 11, 35, 70])
def test_cut_gives_exactly_the_asked_length(tokenizer, length):
    data = encode_items(phonebook_items(7, seed=0), tokenizer).cut(length)
    assert data.length == length
    full = encode_items(phonebook_items(7, seed=0), tokenizer)
    flat = [t for item in full.items for t in item.answer_ids]
    assert [t for item in data.items for t in item.answer_ids] == flat[:length]


def test_cut_longer_than_data_is_refused(tokenizer):
    data = encode_items(phonebook_items(2, seed=0), tokenizer)
    with pytest.raises(MemlawInputError, match="longer than the data"):
        data.cut(21)


def test_chat_prompt_uses_the_template_with_a_system_message(tokenizer):
    (item,) = encode_items([MemoryItem("Jerry Becerra:", "9100672710")], tokenizer).items
    prompt = tokenizer.decode(item.prompt_ids)
    assert prompt == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nJerry Becerra:<|im_end|>\n<|im_start|>assistant\n"
    )
    assert tokenizer.decode(item.answer_ids) == "9100672710"


def test_raw_prompt_is_the_key_alone(tokenizer):
    (item,) = encode_items([MemoryItem("Jerry Becerra:", "9100672710")], tokenizer, prompt_format="raw").items
    assert tokenizer.decode(item.prompt_ids, skip_special_tokens=True) == "Jerry Becerra:"


def test_token_values_are_used_verbatim(tokenizer):
    ids = (5000, 5001, 17, 17, 40000)
    (item,) = encode_items([MemoryItem("k", tokenizer.decode(ids), value_ids=ids)], tokenizer).items
    assert item.answer_ids == ids


def test_batch_marks_exactly_the_answer_positions(tokenizer):
    data = encode_items([MemoryItem("a:", "12"), MemoryItem("a much longer key:", "345")], tokenizer)
    batch = make_batch(data, [0, 1], pad_id=tokenizer.pad_token_id)
    for row, item in enumerate(data.items):
        marked = batch.input_ids[row][batch.answer_mask[row]].tolist()
        assert marked == list(item.answer_ids)
        assert int(batch.attention_mask[row].sum()) == item.sequence_length


def test_unknown_prompt_format(tokenizer):
    with pytest.raises(MemlawInputError, match="prompt format"):
        encode_items([MemoryItem("a", "b")], tokenizer, prompt_format="xml")


def test_an_answers_end_token_is_supervised_after_it_and_not_counted_in_the_length(tokenizer):
    items = [MemoryItem("Ada", "7381"), MemoryItem("Bo", "52-9")]
    plain = encode_items(items, tokenizer)
    ended = encode_items(items, tokenizer, end=True)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    # the chat template closes the assistant's turn with <|im_end|>; raw prompts end with EOS
    assert end_of_answer(tokenizer, "chat") == (im_end,) and end_of_answer(tokenizer, "raw") == (
        tokenizer.eos_token_id,
    )
    assert ended.length == plain.length and ended.supervised_lengths == [n + 1 for n in plain.supervised_lengths]
    for a, b in zip(plain.items, ended.items, strict=True):
        assert b.supervised_ids == (*a.answer_ids, im_end) and b.prompt_ids == a.prompt_ids
    batch = make_batch(ended, [0, 1], pad_id=tokenizer.pad_token_id)
    assert batch.answer_mask.sum(1).tolist() == ended.supervised_lengths
    # a cut answer does not end where it was cut: its end token goes with its tail
    cut = ended.cut(plain.length - 1)
    assert cut.items[0].end_ids == (im_end,) and cut.items[-1].end_ids == ()
