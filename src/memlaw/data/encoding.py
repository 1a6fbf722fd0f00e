"""Turn memory items into token sequences where only the answer tokens are supervised.

The answer length ℓ of a data set is the number of answer tokens, counted with the model's
tokenizer; ``EncodedData.cut`` trims a data set to an exact ℓ. With ``end=True`` each answer is
followed by a supervised end token (the chat template's end of turn, or EOS for raw prompts),
so that an adapter learns where its answer stops; ℓ does not count it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from memlaw.constants import DEFAULT_SYSTEM_PROMPT
from memlaw.data.items import MemoryItem
from memlaw.errors import MemlawInputError

PROMPT_FORMATS = ("chat", "raw")


@dataclass(frozen=True)
class EncodedItem:
    key: str
    prompt_ids: tuple[int, ...]
    answer_ids: tuple[int, ...]
    #: Supervised after the answer: the token that ends it (empty when the end is not trained).
    end_ids: tuple[int, ...] = ()
    #: The record it was encoded from, kept so that an adapter can save what it holds as written.
    source: MemoryItem | None = field(default=None, compare=False, repr=False)

    @property
    def supervised_ids(self) -> tuple[int, ...]:
        """What training, teacher forcing and greedy recall see after the prompt."""
        return self.answer_ids + self.end_ids

    @property
    def sequence_length(self) -> int:
        return len(self.prompt_ids) + len(self.supervised_ids)


@dataclass(frozen=True)
class EncodedData:
    items: tuple[EncodedItem, ...]

    @property
    def length(self) -> int:
        """ℓ: supervised answer tokens over all items."""
        return sum(len(item.answer_ids) for item in self.items)

    @property
    def supervised_lengths(self) -> list[int]:
        """Supervised tokens of each item: its answer and its end token, if trained."""
        return [len(item.supervised_ids) for item in self.items]

    @property
    def max_sequence_length(self) -> int:
        return max(item.sequence_length for item in self.items)

    def cut(self, length: int) -> EncodedData:
        """The first items holding exactly ``length`` answer tokens (the last one truncated)."""
        if length <= 0:
            raise MemlawInputError(f"length must be a positive number of tokens, got {length}")
        if length > self.length:
            raise MemlawInputError(f"length {length} is longer than the data ({self.length} answer tokens)")
        kept: list[EncodedItem] = []
        remaining = length
        for item in self.items:
            take = min(remaining, len(item.answer_ids))
            # a truncated answer does not end where its end token would follow
            ends = item.end_ids if take == len(item.answer_ids) else ()
            kept.append(EncodedItem(item.key, item.prompt_ids, item.answer_ids[:take], ends, item.source))
            remaining -= take
            if remaining == 0:
                break
        return EncodedData(tuple(kept))


def encode_items(
    items: Sequence[MemoryItem],
    tokenizer: PreTrainedTokenizerBase,
    *,
    prompt_format: str = "chat",
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
    end: bool = False,
) -> EncodedData:
    """Tokenise prompts and answers separately, so the answer tokens are exactly the value's;
    ``end`` supervises the token that ends each answer too (``end_of_answer``)."""
    if prompt_format not in PROMPT_FORMATS:
        raise MemlawInputError(f"unknown prompt format '{prompt_format}': use {' or '.join(PROMPT_FORMATS)}")
    if prompt_format == "chat" and not tokenizer.chat_template:
        raise MemlawInputError("this model's tokenizer has no chat template: use prompt_format= raw")
    encoded = []
    ends = end_of_answer(tokenizer, prompt_format) if end else ()
    for item in items:
        if item.context is not None and prompt_format != "chat":
            raise MemlawInputError(
                "conversation records (messages) need the chat prompt format: drop prompt_format= raw"
            )
        if prompt_format == "chat":
            turns = item.context or (("user", item.key),)
            prompt = tokenizer(chat_prompt(tokenizer, turns, system_prompt), add_special_tokens=False).input_ids
        else:
            prompt = tokenizer(item.key).input_ids
        answer = (
            item.value_ids if item.value_ids is not None else tokenizer(item.value, add_special_tokens=False).input_ids
        )
        encoded.append(EncodedItem(item.key, tuple(prompt), tuple(answer), ends, item))
    return EncodedData(tuple(encoded))


def item_record(item: EncodedItem) -> dict[str, Any]:
    """``item`` as an adapter's item store keeps it: its source record and its exact token ids
    (the ids are what is replayed; the source says what they were made from)."""
    source = item.source or MemoryItem(item.key, "")
    record: dict[str, Any] = {"key": source.key, "value": source.value}
    if source.value_ids is not None:
        record["value_ids"] = list(source.value_ids)
    if source.context is not None:
        record["context"] = [list(turn) for turn in source.context]
    encoded = {"prompt_ids": list(item.prompt_ids), "answer_ids": list(item.answer_ids), "end_ids": list(item.end_ids)}
    return {"source": record, "encoded": encoded}


def item_from_record(record: dict[str, Any]) -> EncodedItem:
    """The item ``item_record`` wrote, token for token (``KeyError``/``TypeError`` on a damaged record)."""
    source, encoded = record["source"], record["encoded"]
    ids = {name: tuple(int(i) for i in encoded[name]) for name in ("prompt_ids", "answer_ids", "end_ids")}
    context = source.get("context")
    item = MemoryItem(
        str(source["key"]), str(source["value"]),
        None if source.get("value_ids") is None else tuple(int(i) for i in source["value_ids"]),
        None if context is None else tuple((str(role), str(text)) for role, text in context),
    )  # fmt: skip
    return EncodedItem(item.key, ids["prompt_ids"], ids["answer_ids"], ids["end_ids"], item)


#: An assistant message whose text is found again in the rendered template.
_MARKER = "memlaw-answer-ends-here"


def end_of_answer(tokenizer: PreTrainedTokenizerBase, prompt_format: str) -> tuple[int, ...]:
    """The token that ends an answer: the first token the chat template puts after an assistant
    message (``<|im_end|>``, ``<end_of_turn>``, ``<|eot_id|>``...), or EOS for raw prompts."""
    if prompt_format == "chat":
        messages = [{"role": "user", "content": "?"}, {"role": "assistant", "content": _MARKER}]
        rendered = tokenizer.apply_chat_template(messages, tokenize=False)
        after = rendered.split(_MARKER, 1)[1] if _MARKER in rendered else ""
        ids = tokenizer(after, add_special_tokens=False).input_ids if after.strip() else []
        if ids:
            return (ids[0],)
    if tokenizer.eos_token_id is None:
        raise MemlawInputError("this tokenizer has no end-of-sequence token: train with end_token= false")
    return (tokenizer.eos_token_id,)


def chat_prompt(tokenizer: PreTrainedTokenizerBase, turns: Sequence[tuple[str, str]], system_prompt: str | None) -> str:
    """The chat template up to the assistant's turn; ``system_prompt`` opens it (as in the
    reference) unless the turns bring their own system message."""
    messages = [{"role": role, "content": content} for role, content in turns]
    if system_prompt and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system_prompt})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


@dataclass
class Batch:
    """Padded sequences; ``answer_mask`` marks positions that hold a supervised answer token."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    answer_mask: torch.Tensor
    item_index: torch.Tensor

    def to(self, device: torch.device) -> Batch:
        return Batch(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.answer_mask, self.item_index)))


def make_batch(data: EncodedData, indices: Sequence[int], pad_id: int) -> Batch:
    """Right-padded prompt + answer sequences for teacher-forced passes."""
    rows = [data.items[i] for i in indices]
    width = max(item.sequence_length for item in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    answer = torch.zeros((len(rows), width), dtype=torch.bool)
    for row, item in enumerate(rows):
        prompt, size = len(item.prompt_ids), item.sequence_length
        input_ids[row, :size] = torch.tensor(item.prompt_ids + item.supervised_ids)
        attention[row, :size] = 1
        answer[row, prompt:size] = True
    return Batch(input_ids, attention, answer, torch.tensor(list(indices), dtype=torch.long))
