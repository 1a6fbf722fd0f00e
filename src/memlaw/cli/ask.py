"""``memlaw ask``: load an adapter saved by ``memlaw train`` or ``memlaw probe --save`` and answer
a prompt with it, by greedy decoding, formatted as the adapter was trained."""

from __future__ import annotations

import argparse

from memlaw.cli.common import positive_int
from memlaw.errors import MemlawInputError


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("ask", help="answer a prompt with a saved adapter", description=__doc__)
    parser.add_argument("adapter", help="folder written by memlaw train --out or memlaw probe --save")
    parser.add_argument("prompt", help="the key or question, as in the trained data")
    parser.add_argument(
        "--max-new-tokens", type=positive_int, default=64,
        help="longest answer (default 64; stops where a trained answer ends; prompt and answer must fit the "
        "model's context)",
    )  # fmt: skip
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from memlaw.cli.common import quiet_libraries

    quiet_libraries(quiet=True)  # first: tqdm reads its settings when first imported; only the answer is printed

    from memlaw.data.encoding import encode_items
    from memlaw.data.items import MemoryItem
    from memlaw.measure.greedy import greedy_reply
    from memlaw.memory import read_settings
    from memlaw.models.loading import load_model, load_model_config, load_tokenizer
    from memlaw.placements import load_adapter

    if not args.prompt.strip():
        raise MemlawInputError("the prompt is empty: give the key or question as it stands in the trained data")
    config = read_settings(args.adapter)
    # the prompt checked against the model's context before its weights load
    tokenizer = load_tokenizer(config.model, config.gguf_file)
    (item,) = encode_items(
        [MemoryItem(args.prompt, "")], tokenizer, prompt_format=config.prompt_format, system_prompt=config.system_prompt
    ).items
    context = getattr(load_model_config(config.model, config.gguf_file), "max_position_embeddings", None)
    if context is not None and len(item.prompt_ids) + args.max_new_tokens > context:
        raise MemlawInputError(
            f"the prompt is {len(item.prompt_ids):,} tokens as formatted, and with --max-new-tokens "
            f"{args.max_new_tokens:,} it goes beyond the model's context of {context:,} tokens: shorten the prompt "
            "or lower --max-new-tokens"
        )
    loaded = load_model(
        config.model, gguf_file=config.gguf_file, dtype=config.dtype, device=config.device, tokenizer=tokenizer
    )
    load_adapter(loaded.model, args.adapter)
    reply = greedy_reply(
        loaded.model, loaded.tokenizer, list(item.prompt_ids), config.prompt_format, args.max_new_tokens
    )
    print(reply)
    return 0
