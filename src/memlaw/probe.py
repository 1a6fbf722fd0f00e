"""A probe: write content into one adapter and measure exactly what it remembers.

``run_probe`` = build data -> attach placement -> measure (no adapter) -> train -> measure.
Its ``ProbeResult`` carries every quantity the memory law and the p > 0.5 phase transition
need; ``ProbeResult.to_dict`` is the documented JSON schema (docs/probe-result.md).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from transformers import PretrainedConfig, PreTrainedTokenizerBase

from memlaw._version import __version__
from memlaw.constants import CERTIFY_LOSS, DEFAULT_SYSTEM_PROMPT
from memlaw.data.encoding import EncodedData, encode_items
from memlaw.data.files import load_items
from memlaw.data.longcontext import long_context_item, read_text
from memlaw.data.phonebook import phonebook_items
from memlaw.engine.prefix_cache import build_prefix_cache
from memlaw.engine.stacked import StackedBypassAdapter
from memlaw.errors import MemlawInputError
from memlaw.io import write_json_atomic
from memlaw.measure.recall import RecallMeasurement, measure_recall
from memlaw.models.loading import LoadedModel, load_model, load_model_config, load_tokenizer, resolve_device
from memlaw.models.parts import check_layer_index
from memlaw.placements import PLACEMENTS, Adapter, BypassConfig, PeftAdapter, PeftLoraConfig
from memlaw.placements.peft_lora import DEFAULT_TARGET_MODULES
from memlaw.training.objectives import make_objective
from memlaw.training.trainer import TrainConfig, TrainLog, train_copies

GENERATORS = ("phonebook", "longcontext")
#: Adapters per stacked pass on a GPU (run_probes).
DEFAULT_GPU_COPIES = 8
SCHEMA_VERSION = 1


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
        make_objective(self.method)  # validates the name
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


def attach_stacked(configs: list[ProbeConfig], loaded: LoadedModel) -> Adapter:
    """One adapter holding a copy per probe (the probes differ only in rank and seed)."""
    if len(configs) == 1:
        return configs[0].attach(loaded)
    placements = [c.placement_config() for c in configs]
    seeds = [c.seed for c in configs]
    if configs[0].placement == "bypass":
        return StackedBypassAdapter(loaded.model, placements, seeds)
    return PeftAdapter.stacked(loaded.model, placements, seeds)


@dataclass
class ProbeResult:
    """Measurements of one probe. Losses are mean nats per answer token."""

    config: dict[str, Any]
    placement: dict[str, Any]
    length: int
    num_items: int
    trainable_params: int
    initial_loss: float
    final_loss: float
    delta_loss: float
    initial_frac_above_half: float
    frac_above_half: float
    initial_argmax_accuracy: float
    argmax_accuracy: float
    certified: bool
    certified_step: int | None
    exact_match: float
    token_accuracy: float
    first_error: dict[str, int] | None
    steps: int
    stopped_early: bool
    loss_curve: list[float]
    items: list[dict[str, Any]]
    seconds: float
    memlaw_version: str
    schema_version: int = SCHEMA_VERSION
    adapter: Adapter | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "adapter"}

    def save_json(self, path: str | Path) -> None:
        write_json_atomic(path, self.to_dict())

    def summary(self) -> str:
        lines = [
            (
                f"ℓ = {self.length} answer tokens in {self.num_items} item(s); {self.placement['placement']} rank "
                f"{self.placement['rank']} ({self.trainable_params:,} trainable parameters); {self.steps} steps"
            ),
            f"loss: initial {self.initial_loss:.4f} -> final {self.final_loss:.4f} nats/token (ΔL = {self.delta_loss:.4f})",
            (
                f"tokens with p > 0.5: {self.initial_frac_above_half:.1%} -> {self.frac_above_half:.1%}; "
                f"teacher-forced argmax accuracy {self.argmax_accuracy:.1%}"
            ),
            f"greedy recall: exact match {self.exact_match:.1%} of items, token accuracy {self.token_accuracy:.1%}",
        ]
        if self.certified:
            lines.append(f"certified: every token has p > 0.5 (first certified at step {self.certified_step})")
        else:
            stubborn = sum(len(item["stubborn_positions"]) for item in self.items)
            lines.append(f"not certified: {stubborn} stubborn token(s) with p <= 0.5")
        if self.first_error is not None:
            lines.append(
                f"first greedy error: item {self.first_error['item']}, answer token {self.first_error['position']}"
            )
        return "\n".join(lines)


def build_data(config: ProbeConfig, tokenizer: PreTrainedTokenizerBase, vocab_size: int) -> EncodedData:
    """The encoded items of a probe, cut to exactly ``config.length`` answer tokens when given."""
    encode = lambda items: encode_items(
        items, tokenizer, prompt_format=config.prompt_format, system_prompt=config.system_prompt
    )
    if config.data == "longcontext":
        text = read_text(config.text) if config.text else None
        item = long_context_item(
            tokenizer, config.length, config.ratio, vocab_size=vocab_size, text=text, seed=config.data_seed
        )
        return encode([item])
    if config.data == "phonebook":
        count = max(1, math.ceil(config.length / 10))
        while True:  # numbers take ~10 tokens with digit tokenizers, fewer with merging ones
            data = encode(phonebook_items(count, seed=config.data_seed))
            if data.length >= config.length:
                return data.cut(config.length)
            count = count * 2 + 1
    data = encode(load_items(config.data))
    return data if config.length is None else data.cut(config.length)


def check_fits(config: ProbeConfig, data: EncodedData, model_config: PretrainedConfig) -> None:
    """Layers inside the model and every sequence inside its context window."""
    layers = [config.layer] if isinstance(config.layer, int) else config.layer
    if isinstance(layers, list):
        for layer in layers:
            check_layer_index(layer, int(model_config.num_hidden_layers))
    context = getattr(model_config, "max_position_embeddings", None)
    if context is not None and data.max_sequence_length > context:
        raise MemlawInputError(
            f"an item is {data.max_sequence_length} tokens long with its prompt, beyond the model's context of {context}"
        )


def run_probe(config: ProbeConfig, loaded: LoadedModel | None = None, *, progress: bool = False) -> ProbeResult:
    """Train one adapter per ``config`` and measure it. The adapter stays attached in the result.

    Pass ``loaded`` to reuse a model across probes; call ``result.adapter.remove()`` afterwards
    to give the base model back untouched. Without it, the data and placement are checked
    against the tokenizer and architecture before any weight is loaded, so bad input fails fast.
    """
    loaded, data = _prepare(config, loaded)
    (result,) = _probe_together([config], loaded, data, progress=progress)
    return result


def run_probes(
    configs: list[ProbeConfig],
    loaded: LoadedModel | None = None,
    *,
    max_copies: int | None = None,
    progress: bool = False,
) -> list[ProbeResult]:
    """Run many probes on one model, training up to ``max_copies`` adapters per pass.

    Probes that differ only in rank and seed share their data and every frozen weight, so they
    can train stacked (``engine.stacked``), each giving the result it would give alone.
    ``max_copies`` defaults to 8 on a GPU, where one short sequence leaves the device mostly
    idle, and to 1 on a CPU, where stacking measured no faster per adapter than cached probes
    one after another and holds K times the activations (benchmarks/probe_speed.py).
    Results come back in the order of ``configs``, with their adapters detached.
    """
    if max_copies is None:
        max_copies = default_max_copies(loaded.model.device if loaded else resolve_device(configs[0].device))
    results: list[ProbeResult | None] = [None] * len(configs)
    for group in stack_groups(configs, max_copies):
        loaded, data = _prepare(configs[group[0]], loaded)
        for index, result in zip(group, _probe_together([configs[i] for i in group], loaded, data, progress=progress)):
            assert result.adapter is not None
            result.adapter.remove()
            result.adapter = None
            results[index] = result
    return [r for r in results if r is not None]


def default_max_copies(device: torch.device) -> int:
    return DEFAULT_GPU_COPIES if device.type == "cuda" else 1


def stack_groups(configs: list[ProbeConfig], max_copies: int) -> list[list[int]]:
    """Indices of probes that can train stacked: probes equal but for rank and seed."""
    groups: dict[tuple, list[list[int]]] = {}
    for index, config in enumerate(configs):
        key = tuple(sorted((k, repr(v)) for k, v in asdict(config).items() if k not in ("rank", "seed")))
        chunks = groups.setdefault(key, [[]])
        if len(chunks[-1]) == max_copies:
            chunks.append([])
        chunks[-1].append(index)
    return [chunk for chunks in groups.values() for chunk in chunks]


def _prepare(config: ProbeConfig, loaded: LoadedModel | None) -> tuple[LoadedModel, EncodedData]:
    if loaded is None:
        tokenizer = load_tokenizer(config.model, config.gguf_file)
        model_config = load_model_config(config.model, config.gguf_file)
    else:
        tokenizer, model_config = loaded.tokenizer, loaded.model.config
    data = build_data(config, tokenizer, int(model_config.vocab_size))
    check_fits(config, data, model_config)
    if loaded is None:
        loaded = load_model(
            config.model, gguf_file=config.gguf_file, dtype=config.dtype, device=config.device, tokenizer=tokenizer
        )
    return loaded, data


def _probe_together(
    configs: list[ProbeConfig], loaded: LoadedModel, data: EncodedData, *, progress: bool
) -> list[ProbeResult]:
    """Probes that share everything but rank and seed: one pass for all (stacked when K > 1)."""
    started = time.perf_counter()
    config, copies = configs[0], len(configs)
    model, pad_id = loaded.model, loaded.tokenizer.pad_token_id
    adapter = attach_stacked(configs, loaded)
    try:
        cache = None
        if config.prefix_cache:
            cache = build_prefix_cache(model, data, adapter, pad_id=pad_id, batch_size=config.eval_batch_size)
        measure = {
            "pad_id": pad_id,
            "batch_size": config.eval_batch_size,
            "decode_batch_size": config.decode_batch_size,
            "cache": cache,
        }
        with adapter.disabled():  # the base model is the same for every copy: measure it once
            (before,) = measure_recall(model, data, greedy=False, **measure)
        logs = train_copies(
            adapter,
            data,
            make_objective(config.method),
            config.train_config(),
            pad_id=pad_id,
            seeds=[c.seed for c in configs],
            eval_batch_size=config.eval_batch_size,
            cache=cache,
            progress=progress,
        )
        afters = measure_recall(model, data, copies=copies, **measure)
        seconds = (time.perf_counter() - started) / copies
        return [
            _result(c, adapter, j, data, before, after, log, seconds)
            for j, (c, after, log) in enumerate(zip(configs, afters, logs, strict=True))
        ]
    except BaseException:  # never leave a half-trained adapter on a shared model
        adapter.remove()
        raise


def _result(
    config: ProbeConfig,
    adapter: Adapter,
    copy: int,
    data: EncodedData,
    before: RecallMeasurement,
    after: RecallMeasurement,
    log: TrainLog,
    seconds: float,
) -> ProbeResult:
    assert after.greedy is not None
    return ProbeResult(
        config=asdict(config),
        placement=adapter.copy_describe(copy),
        length=data.length,
        num_items=len(data.items),
        trainable_params=adapter.copy_trainable_params(copy),
        initial_loss=before.loss,
        final_loss=after.loss,
        delta_loss=before.loss - after.loss,
        initial_frac_above_half=before.frac_above_half,
        frac_above_half=after.frac_above_half,
        initial_argmax_accuracy=before.argmax_accuracy,
        argmax_accuracy=after.argmax_accuracy,
        certified=after.certified,
        certified_step=_certified_step(log, after, config),
        exact_match=after.greedy.exact_match,
        token_accuracy=after.greedy.token_accuracy(after.lengths),
        first_error=after.greedy.first_error,
        steps=log.steps,
        stopped_early=log.stopped_early,
        loss_curve=log.loss_curve,
        items=_item_reports(data, before, after),
        seconds=seconds,
        memlaw_version=__version__,
        adapter=adapter,
    )


def _certified_step(log: TrainLog, after: RecallMeasurement, config: ProbeConfig) -> int | None:
    """The trainer's first certified step; the final measurement is the last (clean) check."""
    if not after.certified or not config.check_every:
        return None
    return log.steps if log.certified_step is None else log.certified_step


def _item_reports(data: EncodedData, before: RecallMeasurement, after: RecallMeasurement) -> list[dict[str, Any]]:
    assert after.greedy is not None
    reports = []
    for index, (item, l0, l1) in enumerate(zip(data.items, before.item_losses(), after.item_losses(), strict=True)):
        p0, p1 = torch.exp(-l0).tolist(), torch.exp(-l1).tolist()
        reports.append(
            {
                "key": item.key,
                "length": len(item.answer_ids),
                "exact_match": after.greedy.item_exact[index],
                "first_error": after.greedy.item_first_error[index],
                "token_accuracy": after.greedy.item_matched[index] / len(item.answer_ids),
                "min_prob": min(p1),
                "stubborn_positions": torch.nonzero(l1 >= CERTIFY_LOSS).flatten().tolist(),
                "initial_token_probs": [round(p, 6) for p in p0],
                "token_probs": [round(p, 6) for p in p1],
            }
        )
    return reports
