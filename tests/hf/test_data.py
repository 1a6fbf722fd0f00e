"""Memory items as Trainer rows: the prompt unsupervised, the answer and its end supervised."""

from memlaw.data import MemoryItem
from memlaw.hf import supervised_rows


def test_trainer_rows_supervise_the_answer_and_its_end_only(tokenizer):
    (row,) = supervised_rows([MemoryItem("Ada", "7381")], tokenizer)
    supervised = row["labels"][row["labels"] != -100].tolist()
    assert tokenizer.decode(supervised) == "7381<|im_end|>"
    assert row["input_ids"][-len(supervised) :].tolist() == supervised
