"""Standard PEFT LoRA on chosen modules and layers: the adapters people actually train.

Saved in PEFT's own format, so ``PeftModel.from_pretrained`` loads what memlaw trained.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict
from peft.tuners.lora import LoraLayer
from peft.tuners.tuners_utils import _maybe_include_all_linear_layers  # PEFT's rule for all-linear
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel

from memlaw.constants import MLP_MODULES
from memlaw.errors import MemlawInputError
from memlaw.models.parts import check_layer, default_layer
from memlaw.placements.base import WEIGHTS_FILE, Adapter, fill_grown


@dataclass
class PeftLoraConfig:
    """LoRA of rank ``rank`` on ``target_modules`` of ``layers`` (default: the 2/3-depth layer).

    ``layers`` = "all" adapts every layer. ``lora_alpha`` defaults to the rank, a scaling of 1,
    so that rank alone sets capacity, as in the paper's unscaled bypass.
    """

    rank: int
    layers: list[int] | str | None = None
    target_modules: list[str] = field(default_factory=lambda: list(MLP_MODULES))
    lora_alpha: float | None = None
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.rank <= 0:
            raise MemlawInputError(f"rank must be a positive integer, got {self.rank}")
        if not self.target_modules:
            raise MemlawInputError("target_modules is empty: name at least one module (e.g. gate_proj)")
        if not 0.0 <= self.dropout < 1.0:
            raise MemlawInputError(f"dropout must be within [0, 1), got {self.dropout}")
        if isinstance(self.layers, str) and self.layers != "all":
            raise MemlawInputError(f"layers must be a list of layer indices or 'all', got '{self.layers}'")

    @classmethod
    def from_settings(
        cls, *, rank: int, layer, dropout: float, target_modules: list[str] | None, lora_alpha: float | None, **_: Any
    ) -> PeftLoraConfig:
        """From probe settings (the bypass-only ones do not apply)."""
        layers = [layer] if isinstance(layer, int) else layer
        return cls(rank, layers, list(target_modules or MLP_MODULES), lora_alpha, dropout)

    def attach(self, model: PreTrainedModel, *, seed: int = 0) -> PeftAdapter:
        return PeftAdapter(model, [self], [seed])


class PeftAdapter(Adapter):
    """K ≥ 1 PEFT LoRAs: one adapter, or K of them trained stacked.

    Stacked copies are PEFT adapters ``copy0``..``copyK-1`` of one PeftModel; every batch is
    K blocks of rows and each LoRA layer applies copy j to block j only, through PEFT's
    mixed-batch forward (the ``adapter_names`` argument), which memlaw fills in from the row
    count. The base model stays in eval mode, where PEFT allows mixed batches.
    """

    kind = "peft"

    def __init__(self, model: PreTrainedModel | PeftModel, configs: list[PeftLoraConfig], seeds: list[int]):
        base = model.get_base_model() if isinstance(model, PeftModel) else model
        self.configs = [_resolved(base, config) for config in configs]
        self.copies = len(configs)
        self.names = ["default"] if self.copies == 1 else [f"copy{j}" for j in range(self.copies)]
        if isinstance(model, PeftModel):  # loaded with PeftModel.from_pretrained
            self.peft_model = model
        else:
            for name, config, seed in zip(self.names, self.configs, seeds, strict=True):
                with torch.random.fork_rng(devices=[]):  # PEFT draws its init from the global RNG
                    torch.manual_seed(seed)
                    try:
                        if name == self.names[0]:
                            self.peft_model = get_peft_model(model, lora_config(config), adapter_name=name)
                        else:
                            self.peft_model.add_adapter(name, lora_config(config))
                    except ValueError as err:
                        raise MemlawInputError(f"PEFT cannot place LoRA here: {str(err).splitlines()[0]}") from err
            self.peft_model.base_model.set_adapter(self.names)  # all active and trainable
        self.model = self.peft_model.get_base_model()
        self._hooks = [] if self.copies == 1 else self._route_rows()
        # found once: clipping and idle copies ask for them at every step
        named = list(self.peft_model.named_parameters())
        self._copy_params = [  # PEFT names them lora_A.<adapter>.weight
            [p for name, p in named if "lora_" in name and f".{adapter}." in name] for adapter in self.names
        ]
        self.train(False)

    def _route_rows(self) -> list[torch.utils.hooks.RemovableHandle]:
        """Hooks that hand every LoRA layer the adapter name of each row: block j -> copy j."""
        names: list[str] | None = None

        def count_rows(module: nn.Module, args: tuple, kwargs: dict) -> None:
            nonlocal names
            inputs = kwargs.get("input_ids", args[0] if args else None)
            rows = len(inputs if inputs is not None else kwargs["inputs_embeds"])
            blocks = self.blocks
            per_block = rows // len(blocks)
            names = [self.names[blocks[r // per_block]] for r in range(rows)] if rows % len(blocks) == 0 else None

        def route(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
            if names is None or len(args[0]) != len(names):
                return None
            return args, {**kwargs, "adapter_names": names}

        hooks = [self.model.get_decoder().register_forward_pre_hook(count_rows, with_kwargs=True)]
        for module in self.peft_model.modules():
            if isinstance(module, LoraLayer):
                hooks.append(module.register_forward_pre_hook(route, with_kwargs=True))
        return hooks

    @property
    def config(self) -> PeftLoraConfig:
        return self.configs[0]

    @property
    def first_layer(self) -> int:
        return 0 if self.config.layers == "all" else min(self.config.layers)

    @property
    def stochastic(self) -> bool:
        return self.config.dropout > 0

    def copy_parameters(self, copy: int) -> list[nn.Parameter]:
        return self._copy_params[copy]

    @contextmanager
    def disabled(self) -> Iterator[None]:
        with self.peft_model.disable_adapter():
            yield

    def train(self, mode: bool = True) -> None:
        # Only LoRA's own dropout follows ``mode``; the frozen base model stays in eval mode.
        for name, module in self.peft_model.named_modules():
            if name.split(".")[-1] == "lora_dropout":
                module.train(mode)

    def save_pretrained(self, directory: str | Path, copy: int = 0) -> None:
        """PEFT's own format; a stacked copy is saved as a lone adapter named "default"."""
        if self.copies == 1:
            self.peft_model.save_pretrained(str(directory))
            return
        state = get_peft_model_state_dict(self.peft_model, adapter_name=self.names[copy])
        Path(directory).mkdir(parents=True, exist_ok=True)
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in state.items()}, Path(directory) / "adapter_model.safetensors"
        )
        self.peft_model.peft_config[self.names[copy]].save_pretrained(str(directory))

    def load_weights(self, directory: str | Path, copy: int = 0) -> None:
        saved = load_file(Path(directory) / WEIGHTS_FILE, device=str(self.model.device))
        name = self.names[copy]
        params = dict(self.peft_model.named_parameters())
        filled = set()
        for key, tensor in saved.items():  # PEFT saves lora_A.weight, without the adapter's name
            factor = "lora_A" if ".lora_A." in key else "lora_B"
            target = key.replace(f".{factor}.", f".{factor}.{name}.")
            if target not in params:
                raise MemlawInputError(f"{directory}: its weight {key} has no place in this adapter")
            # A: (r, in), B: (out, r)
            fill_grown(params[target], tensor, 0 if factor == "lora_A" else 1, output_factor=factor == "lora_B")
            filled.add(target)
        if len(filled) != len(self.copy_parameters(copy)):
            raise MemlawInputError(
                f"{directory} holds weights for {len(filled)} of this adapter's "
                f"{len(self.copy_parameters(copy))} LoRA matrices: it adapts other modules"
            )

    def remove(self) -> PreTrainedModel:
        for hook in self._hooks:
            hook.remove()
        return self.peft_model.unload()

    def describe(self, copy: int = 0) -> dict[str, Any]:
        return {"placement": self.kind, **asdict(self.configs[copy])}


def _resolved(base: PreTrainedModel, config: PeftLoraConfig) -> PeftLoraConfig:
    """``config`` made explicit (default layer, alpha, module order) and checked against ``base``."""
    layers = config.layers
    if layers is None:
        layers = [default_layer(base)]
    elif layers != "all":
        layers = sorted({check_layer(base, int(i)) for i in layers})
    alpha = config.rank if config.lora_alpha is None else config.lora_alpha
    modules = config.target_modules
    if [m.lower() for m in modules] == [ALL_LINEAR]:
        modules = all_linear_modules(base)
    return PeftLoraConfig(config.rank, layers, sorted(modules), alpha, config.dropout)


#: PEFT's spelling of "every linear layer but the output head".
ALL_LINEAR = "all-linear"


def all_linear_modules(base: PreTrainedModel) -> list[str]:
    """The module names PEFT's ``target_modules="all-linear"`` adapts in ``base`` (by PEFT's own
    rule), named as memlaw records modules: q_proj, ..., down_proj."""
    resolved = _maybe_include_all_linear_layers(LoraConfig(target_modules=ALL_LINEAR, task_type="CAUSAL_LM"), base)
    return sorted({name.rsplit(".", 1)[-1] for name in resolved.target_modules})


def lora_config(config: PeftLoraConfig) -> LoraConfig:
    """PEFT's ``LoraConfig`` for a resolved ``config`` (explicit layers and alpha)."""
    return LoraConfig(
        r=config.rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.dropout,
        target_modules=list(config.target_modules),
        layers_to_transform=None if config.layers == "all" else config.layers,
        bias="none",
        task_type="CAUSAL_LM",
    )
