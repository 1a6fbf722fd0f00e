"""Running probes: one (``run_probe``) or many on one model (``run_probes``), stacked where it pays.

``run_probe`` = build data -> attach placement -> measure (no adapter) -> train -> measure.
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch.profiler import record_function

from memlaw.config import settings_where
from memlaw.data.encoding import EncodedData
from memlaw.engine.prefix_cache import build_prefix_cache
from memlaw.measure.recall import measure_recall
from memlaw.models.loading import LoadedModel
from memlaw.placements import DAMAGED_WEIGHTS, PLACEMENTS, Adapter, damaged_weights
from memlaw.probe.config import ProbeConfig
from memlaw.probe.data import prepare
from memlaw.probe.lr_search import search_lr
from memlaw.probe.result import ProbeResult, build_result
from memlaw.training.methods import make_objective
from memlaw.training.objectives import Objective
from memlaw.training.trainer import train_copies

#: Settings in which probes that train stacked may differ (rank and seed).
STACKED_SETTINGS = settings_where(ProbeConfig, stacks=True)
#: Adapters per stacked pass on a GPU (run_probes); not yet measured against one by one.
DEFAULT_GPU_COPIES = 8
#: Most adapters stacked in one pass anywhere.
MAX_COPIES = 16
#: On a CPU, stacking pays while one step's tokens over all copies stay below this: small matrix
#: products use the cores poorly, large ones are compute-bound and only pay K times the memory.
#: Measured with benchmarks/small_probes.py on 2 cores (docs/performance.md, "Small probes").
CPU_STACK_TOKENS = 1536


def run_probe(config: ProbeConfig, loaded: LoadedModel | None = None, *, progress: bool = False) -> ProbeResult:
    """Train one adapter per ``config`` and measure it. The adapter stays attached in the result.

    Pass ``loaded`` to reuse a model across probes; call ``result.adapter.remove()`` afterwards
    to give the base model back untouched. Without it, the data and placement are checked
    against the tokenizer and architecture before any weight is loaded, so bad input fails fast.
    """
    loaded, data = prepare(config, loaded)
    (result,) = probe_together([config], loaded, data, progress=progress)
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
    can train stacked (K copies of one adapter: ``placements``), each giving the result it
    would give alone. By default K comes from the work of one step (``stack_size``); each
    result records the K it trained in (``stacked_copies``). Results come back in the order of
    ``configs``, with their adapters detached.
    """
    results: list[ProbeResult | None] = [None] * len(configs)
    for group in stack_groups(configs, max_copies or MAX_COPIES):
        loaded, data = prepare(configs[group[0]], loaded)
        size = max_copies or stack_size(loaded.model.device, data, configs[group[0]].batch_size)
        for start in range(0, len(group), size):
            part = group[start : start + size]
            together = probe_together([configs[i] for i in part], loaded, data, progress=progress)
            for index, result in zip(part, together, strict=True):
                assert result.adapter is not None
                result.adapter.remove()
                result.adapter = None
                results[index] = result
    return [r for r in results if r is not None]


def stack_size(device: torch.device, data: EncodedData, batch_size: int) -> int:
    """How many adapters to train in one pass on ``data``: by the tokens of one step on a CPU."""
    if device.type == "cuda":
        return DEFAULT_GPU_COPIES
    step_tokens = min(batch_size, len(data.items)) * data.max_sequence_length
    return max(1, min(MAX_COPIES, CPU_STACK_TOKENS // step_tokens))


def stack_groups(configs: list[ProbeConfig], max_copies: int) -> list[list[int]]:
    """Indices of probes that can train stacked: probes equal but for rank and seed."""
    groups: dict[tuple, list[list[int]]] = {}
    for index, config in enumerate(configs):
        key = tuple(sorted((k, repr(v)) for k, v in asdict(config).items() if k not in STACKED_SETTINGS))
        chunks = groups.setdefault(key, [[]])
        if len(chunks[-1]) == max_copies:
            chunks.append([])
        chunks[-1].append(index)
    return [chunk for chunks in groups.values() for chunk in chunks]


def probe_together(
    configs: list[ProbeConfig],
    loaded: LoadedModel,
    data: EncodedData,
    *,
    progress: bool,
    objective: Objective | None = None,
    start_from: str | Path | None = None,
) -> list[ProbeResult]:
    """Probes that share everything but rank and seed: one pass for all (stacked when K > 1).

    ``objective`` replaces the configured method's; ``start_from`` (a saved adapter's folder)
    gives every copy that adapter's weights before training, grown where the rank is larger."""
    started = time.perf_counter()
    config, copies = configs[0], len(configs)
    model, pad_id = loaded.model, loaded.tokenizer.pad_token_id
    lr_choice = None
    if config.lr_search:  # one rate for the pass, searched on its first adapter
        with record_function("memlaw.lr_search"):
            lr_choice = search_lr(config, loaded, data)
        configs = [replace(c, lr=lr_choice.lr) for c in configs]
        config = configs[0]
    adapter = attach_stacked(configs, loaded)
    try:
        if start_from is not None:
            for copy in range(copies):
                try:
                    adapter.load_weights(start_from, copy)
                except DAMAGED_WEIGHTS as err:
                    raise damaged_weights(start_from, err) from err
        cache = None
        if config.prefix_cache:
            with record_function("memlaw.cache_build"):
                cache = build_prefix_cache(model, data, adapter, pad_id=pad_id, batch_size=config.eval_batch_size)
        measure = {
            "pad_id": pad_id,
            "batch_size": config.eval_batch_size,
            "decode_batch_size": config.decode_batch_size,
            "cache": cache,
        }
        with adapter.disabled(), record_function("memlaw.initial_eval"):  # the same for every copy: once
            (before,) = measure_recall(model, data, greedy=False, **measure)
        logs = train_copies(
            adapter,
            data,
            objective or make_objective(config.method, config.method_options),
            config.train_config(),
            pad_id=pad_id,
            seeds=[c.seed for c in configs],
            eval_batch_size=config.eval_batch_size,
            cache=cache,
            progress=progress,
        )
        with record_function("memlaw.final_eval"):
            afters = measure_recall(model, data, copies=copies, **measure)
        # each copy's share of the pass, by the steps it trained (a stopped copy leaves the batch)
        elapsed, steps = time.perf_counter() - started, [max(1, log.steps) for log in logs]
        chosen = None if lr_choice is None else lr_choice.to_dict()
        return [
            build_result(
                c, adapter, j, data, before, after, log, elapsed * steps[j] / sum(steps), loaded.tokenizer, copies,
                lr_choice=chosen,
            )
            for j, (c, after, log) in enumerate(zip(configs, afters, logs, strict=True))
        ]  # fmt: skip
    except BaseException:  # never leave a half-trained adapter on a shared model
        adapter.remove()
        raise


def attach_stacked(configs: list[ProbeConfig], loaded: LoadedModel) -> Adapter:
    """One adapter holding a copy per probe (the probes differ only in rank and seed)."""
    placement = PLACEMENTS[configs[0].placement]
    return placement.stack(loaded.model, [c.placement_config() for c in configs], [c.seed for c in configs])
