import torch

from memlaw.data import encode_items, phonebook_items
from memlaw.measure import greedy_answers
from memlaw.measure.recall import compare_answers
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
