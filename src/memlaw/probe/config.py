"""ProbeConfig: every setting of a probe; the CLI, YAML files and sweeps use the same names."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from memlaw.constants import DEFAULT_SYSTEM_PROMPT
from memlaw.errors import MemlawInputError
from memlaw.models.loading import LoadedModel, resolve_device
from memlaw.placements import PLACEMENTS, Adapter, BypassConfig, PeftLoraConfig
from memlaw.placements.peft_lora import DEFAULT_TARGET_MODULES
from memlaw.training.objectives import make_objective
from memlaw.training.trainer import TrainConfig

GENERATORS = ("phonebook", "longcontext")


@dataclass
class ProbeConfig:
    """Everything that defines a probe; the CLI and YAML configs use the same field names."""

    # model
    model: str = "smollm2-135m-instruct"
    gguf_file: str | None = None
    dtype: str = "float32"
    device: str = "auto"
    # data
    data: str = "longcontext"  # phonebook | longcontext | path to a JSONL or text file
    length: int | None = None  # ℓ, answer tokens; required for generators, optional cut for files
    ratio: float = 1.0  # long context: share of tokens replaced by random ones
    text: str | None = None  # long context: source text (default: the packaged Austen chapters)
    data_seed: int = 0
    prompt_format: str = "chat"
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT
    # placement
    placement: str = "bypass"
    rank: int = 8
    layer: int | list[int] | str | None = None  # None: about 2/3 of the depth; PEFT also takes a list or "all"
    init: str = "reference"  # bypass only
    dropout: float = 0.0  # the reference uses 0.1 on the bypass output; it slows memorisation a lot
    target_modules: list[str] | None = None  # PEFT only; None: the MLP projections
    lora_alpha: float | None = None  # PEFT only; None: equal to the rank (scaling 1)
    # training
    method: str = "sft"
    method_options: dict[str, Any] | None = None  # the objective's documented options (memlaw.training.memft)
    lr: float = 1e-2
    epochs: int = 100
    steps: int | None = None
    batch_size: int = 8
    max_grad_norm: float = 1.0
    weight_decay: float = 0.0
    seed: int = 0
    check_every: int = 1
    stop_when_certified: bool = False
    # engine
    prefix_cache: bool = True  # compute the frozen layers below the adapter once, not at every step
    autocast: bool = False  # bf16 autocast of training forward passes on CUDA
    # measurement
    eval_batch_size: int = 16
    decode_batch_size: int = 32

    def __post_init__(self) -> None:
        if self.length is not None and self.length <= 0:
            raise MemlawInputError(f"length must be a positive number of tokens, got {self.length}")
        if not 0.0 <= self.ratio <= 1.0:
            raise MemlawInputError(f"ratio must be within [0, 1], got {self.ratio}")
        if self.placement not in PLACEMENTS:
            raise MemlawInputError(f"unknown placement '{self.placement}': use {' or '.join(PLACEMENTS)}")
        if self.rank <= 0:
            raise MemlawInputError(f"rank must be a positive integer, got {self.rank}")
        if self.data in GENERATORS and self.length is None:
            raise MemlawInputError(f"--length is required with --data {self.data}")
        if self.autocast and resolve_device(self.device).type != "cuda":
            raise MemlawInputError("autocast (bf16) is for CUDA devices; on this device train without it")
        make_objective(self.method, self.method_options)  # validates the name and the options
        self.train_config()  # validates the training settings

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ProbeConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise MemlawInputError(f"unknown probe setting '{unknown[0]}' (known: {', '.join(sorted(known))})")
        return cls(**values)

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            lr=self.lr,
            epochs=self.epochs,
            steps=self.steps,
            batch_size=self.batch_size,
            max_grad_norm=self.max_grad_norm,
            weight_decay=self.weight_decay,
            seed=self.seed,
            check_every=self.check_every,
            stop_when_certified=self.stop_when_certified,
            autocast=self.autocast,
        )

    def placement_config(self) -> BypassConfig | PeftLoraConfig:
        """The placement this probe asks for, checked."""
        if self.placement == "bypass":
            if isinstance(self.layer, (list, str)):
                raise MemlawInputError("the bypass placement sits on exactly one layer: give --layer as one number")
            return BypassConfig(self.rank, self.layer, self.init, self.dropout)
        return PeftLoraConfig(
            self.rank,
            layers=[self.layer] if isinstance(self.layer, int) else self.layer,
            target_modules=list(self.target_modules or DEFAULT_TARGET_MODULES),
            lora_alpha=self.lora_alpha,
            dropout=self.dropout,
        )

    def attach(self, loaded: LoadedModel) -> Adapter:
        """Attach the configured placement to ``loaded.model`` (seeded init)."""
        return self.placement_config().attach(loaded.model, seed=self.seed)
