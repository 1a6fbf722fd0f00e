"""``memlaw ask``: load an adapter saved by ``memlaw train`` or ``memlaw probe --save`` and answer
a prompt with it, by greedy decoding, formatted as the adapter was trained."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path

from memlaw.errors import MemlawInputError

#: Longest answer ask generates (a typo of many digits would otherwise run for ever).
MAX_NEW_TOKENS = 65_536


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("ask", help="answer a prompt with a saved adapter", description=__doc__)
    parser.add_argument("adapter", help="folder written by memlaw train --out or memlaw probe --save")
    parser.add_argument("prompt", help="the key or question, as in the trained data")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="longest answer (default 64; stops at EOS)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from memlaw.cli.common import quiet_libraries

    quiet_libraries(quiet=True)  # first: tqdm reads its settings when first imported; only the answer is printed

    from memlaw.data.encoding import encode_items
    from memlaw.data.items import MemoryItem
    from memlaw.measure.greedy import greedy_reply
    from memlaw.models.loading import load_model
    from memlaw.placements import load_adapter
    from memlaw.probe.config import ProbeConfig

    if not 1 <= args.max_new_tokens <= MAX_NEW_TOKENS:
        raise MemlawInputError(f"--max-new-tokens must be between 1 and {MAX_NEW_TOKENS:,}, got {args.max_new_tokens}")
    settings_file = Path(args.adapter) / "probe_config.json"
    if not settings_file.is_file():
        raise MemlawInputError(
            f"{args.adapter} is not an adapter saved by memlaw (no probe_config.json): "
            "give a folder written by memlaw train --out or memlaw probe --save"
        )
    try:
        saved = json.loads(settings_file.read_text(encoding="utf-8"))
        config = ProbeConfig(**{f.name: saved[f.name] for f in fields(ProbeConfig) if f.name in saved})
    except (ValueError, TypeError) as err:  # JSON errors and undecodable bytes are ValueErrors
        raise MemlawInputError(f"{settings_file} is damaged ({type(err).__name__}: {err})") from err
    loaded = load_model(config.model, gguf_file=config.gguf_file, dtype=config.dtype, device=config.device)
    load_adapter(loaded.model, args.adapter)
    (item,) = encode_items(
        [MemoryItem(args.prompt, "")],
        loaded.tokenizer,
        prompt_format=config.prompt_format,
        system_prompt=config.system_prompt,
    ).items
    reply = greedy_reply(
        loaded.model, loaded.tokenizer, list(item.prompt_ids), config.prompt_format, args.max_new_tokens
    )
    print(reply)
    return 0
