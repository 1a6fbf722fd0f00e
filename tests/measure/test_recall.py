import torch

from memlaw.data import EncodedData, EncodedItem, encode_items, phonebook_items
from memlaw.measure import evaluate_tokens, greedy_answers
from memlaw.measure.recall import compare_answers, first_argmax_errors, measure_recall
from memlaw.placements import BypassConfig


def manual_greedy(model, prompt_ids, steps):
    """Unbatched greedy decoding without a KV cache: the definition, step by step."""
    ids = torch.tensor([prompt_ids])
    with torch.no_grad():
        for _ in range(steps):
            next_id = model(input_ids=ids).logits[0, -1].argmax()
            ids = torch.cat([ids, next_id.view(1, 1)], dim=1)
    return ids[0, len(prompt_ids) :].tolist()


def test_batched_greedy_equals_step_by_step_decoding(tiny, detach):
    adapter = BypassConfig(rank=4, layer=2).attach(tiny.model)
    detach.append(adapter)
    with torch.no_grad():
        adapter.lora_B[0].normal_(std=0.5, generator=torch.Generator().manual_seed(0))
    # keys of different lengths, so left padding is exercised
    data = encode_items(phonebook_items(5, seed=4), tiny.tokenizer, prompt_format="raw")
    (batched,) = greedy_answers(tiny.model, data, pad_id=tiny.tokenizer.pad_token_id, batch_size=5)
    for item, output in zip(data.items, batched, strict=True):
        assert output == manual_greedy(tiny.model, list(item.prompt_ids), len(item.answer_ids))


def test_compare_answers_position_metrics():
    recall = compare_answers([[1, 2, 3, 4], [5, 9, 7, 8], [1, 1]], [[1, 2, 3, 4], [5, 6, 7, 8], [2, 1]])
    assert recall.item_exact == [True, False, False]
    assert recall.item_first_error == [None, 1, 0]
    assert recall.item_matched == [4, 3, 1]
    assert recall.exact_match == 1 / 3
    assert recall.token_accuracy([4, 4, 2]) == 8 / 10
    assert recall.first_error == {"item": 1, "position": 1}


def test_decoding_from_the_first_teacher_forced_error_equals_decoding_everything(tiny, detach):
    """Greedy decoding only starts where teacher forcing first errs; before it the answer stands.

    Answers are built from the model's own greedy continuation, right for the first m tokens and
    wrong at m, so teacher forcing first errs exactly at m; decoding from there must give what
    decoding everything gives."""
    adapter = BypassConfig(rank=4, layer=2).attach(tiny.model)
    detach.append(adapter)
    with torch.no_grad():
        adapter.lora_B[0].normal_(std=0.5, generator=torch.Generator().manual_seed(0))
    pad = tiny.tokenizer.pad_token_id
    prompts = encode_items(phonebook_items(4, seed=4), tiny.tokenizer, prompt_format="raw").items
    continuations = [manual_greedy(tiny.model, list(item.prompt_ids), 12) for item in prompts]
    right = [0, 3, 7, 12]  # tokens of the greedy path each answer keeps; 12: the whole answer is right
    items = []
    for item, path, m in zip(prompts, continuations, right, strict=True):
        answer = path[:m] + ([(path[m] + 1) % 1000] + path[m + 1 :] if m < 12 else [])
        items.append(EncodedItem(item.key, item.prompt_ids, tuple(answer)))
    data = EncodedData(tuple(items))
    tokens = evaluate_tokens(tiny.model, data, pad_id=pad)
    assert first_argmax_errors(tokens, [12] * 4) == right
    (everything,) = greedy_answers(tiny.model, data, pad_id=pad)
    assert greedy_answers(tiny.model, data, pad_id=pad, starts=[right])[0] == everything
    (measured,) = measure_recall(tiny.model, data, pad_id=pad)
    assert measured.greedy.item_decoded == everything and measured.greedy.item_first_error == [0, 3, 7, None]
