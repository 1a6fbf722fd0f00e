"""Probe speed: a reference-style training loop against memlaw's engine, in one process.

The reference loop is what the authors' code does each step (docs/reference.md
§5): a full forward pass with the adapter and the HF loss over full-vocabulary logits, a
second full forward pass without the adapter (its loss is logged every step), backward,
clip, AdamW step. memlaw's engine caches the frozen layers below the adapter, computes the
head only on answer tokens, fused with the loss in chunks, never recomputes the base model,
and trains K adapters stacked in one pass.

Printed, for each length ℓ (random tokens, the chat prompt, the bypass at layer 20 of 30 of
SmolLM2-135M-Instruct): seconds per training step (median over repetitions), the speedup
per probe and per 8-rank sweep, the per-adapter cost of stacking against cached adapters one
after another, and peak resident memory above the loaded model. Run:

    python benchmarks/probe_speed.py                 # ℓ = 256 and 1024, 3 repetitions
    python benchmarks/probe_speed.py --lengths 256 --repeats 5
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import re
import statistics
import time
from functools import partial
from pathlib import Path

import torch
from transformers import get_linear_schedule_with_warmup
from transformers.utils import logging

from memlaw.data import make_batch
from memlaw.engine.prefix_cache import build_prefix_cache
from memlaw.models import load_model
from memlaw.placements import BypassAdapter, BypassConfig
from memlaw.probe import ProbeConfig, build_data, stack_size
from memlaw.training import SFT, TrainConfig
from memlaw.training.trainer import train_copies

RANKS = [1, 2, 4, 8, 16, 32, 64, 128]


LIBC = ctypes.CDLL("libc.so.6")


def peak_rss_reset() -> None:
    """Hand freed heap memory back to the OS, then reset the peak resident set (VmHWM).

    Without the trim, a run could reuse memory an earlier run left resident and its peak
    would not show it.
    """
    gc.collect()
    LIBC.malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")


def rss(field: str) -> float:
    """VmRSS or VmHWM of this process, in MB."""
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024


def timed(fn) -> tuple[float, float]:
    """(seconds, peak MB above the resident set before) of one call."""
    peak_rss_reset()
    before = rss("VmRSS")
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started, rss("VmHWM") - before


def reference_steps(model, adapter, data, pad_id: int, steps: int) -> None:
    """The authors' loop: steered forward + HF loss, unsteered forward (logged), backward, step."""
    batch = make_batch(data, range(len(data.items)), pad_id)
    labels = batch.input_ids.masked_fill(~batch.answer_mask, -100)
    params = adapter.parameters()
    optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.0)
    schedule = get_linear_schedule_with_warmup(optimizer, 0, steps)
    for _ in range(steps):
        adapter.train(True)
        loss = model(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=labels, use_cache=False
        ).loss
        with adapter.disabled():
            reference = model(
                input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=labels, use_cache=False
            ).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        loss.item(), reference.item()  # the reference writes both to its CSV every step


def memlaw_steps(adapter, data, pad_id: int, steps: int, cache, seeds=None, checkpoint_layers=False) -> None:
    config = TrainConfig(steps=steps, batch_size=len(data.items), check_every=0, checkpoint_layers=checkpoint_layers)
    train_copies(adapter, data, SFT(), config, pad_id=pad_id, cache=cache, seeds=seeds)


def cached_run(adapter, data, pad_id: int, steps: int, checkpoint_layers=False) -> tuple[float, float, float]:
    """(seconds to build the prefix cache, seconds and peak MB of ``steps`` training steps)."""
    started = time.perf_counter()
    cache = build_prefix_cache(adapter.model, data, adapter, pad_id=pad_id)
    build = time.perf_counter() - started
    steps_run = partial(memlaw_steps, adapter, data, pad_id, steps, cache, checkpoint_layers=checkpoint_layers)
    seconds, peak = timed(steps_run)
    return build, seconds, peak


def flop_shares(model, data) -> dict[str, float]:
    """Forward FLOPs of one pass: layers below the adapter, layers from it on, output head."""
    cfg = model.config
    d, layers = cfg.hidden_size, cfg.num_hidden_layers
    kv = cfg.num_key_value_heads * (d // cfg.num_attention_heads)
    per_layer_params = d * (2 * d + 2 * kv) + 3 * d * cfg.intermediate_size
    tokens = data.max_sequence_length
    per_layer = 2 * tokens * per_layer_params + 4 * tokens * tokens * d  # projections + attention scores
    k = 20
    return {
        "prefix (layers 0-19)": k * per_layer,
        "suffix (layers 20-29)": (layers - k) * per_layer,
        "head, all positions": 2 * tokens * d * cfg.vocab_size,
        "head, answer tokens": 2 * data.length * d * cfg.vocab_size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="training steps timed per measurement")
    args = parser.parse_args()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    torch.manual_seed(0)
    loaded = load_model(device="cpu")
    model, pad_id = loaded.model, loaded.tokenizer.pad_token_id
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, SmolLM2-135M-Instruct float32 on CPU")

    for length in args.lengths:
        data = build_data(ProbeConfig(data="longcontext", length=length), loaded.tokenizer, model.config.vocab_size)
        shares = flop_shares(model, data)
        total = sum(v for k, v in shares.items() if k != "head, answer tokens")
        print(f"\nℓ = {length} (sequence {data.max_sequence_length} tokens); forward GFLOP per pass:")
        for name, flops in shares.items():
            print(f"  {name:24s} {flops / 1e9:7.2f}  ({flops / total:5.1%} of a full pass)")

        runs: dict[str, list[float]] = {
            name: []
            for name in ("reference", "uncached", "cache build", "memlaw", "one by one", "stacked", "checkpointed")
        }
        memory: dict[str, list[float]] = {"reference": [], "memlaw": [], "stacked": [], "checkpointed": []}
        for _ in range(args.repeats):
            adapter = BypassConfig(rank=8).attach(model)
            seconds, peak = timed(partial(reference_steps, model, adapter, data, pad_id, args.steps))
            adapter.remove()
            runs["reference"].append(seconds / args.steps)
            memory["reference"].append(peak)

            adapter = BypassConfig(rank=8).attach(model)  # memlaw's step without the prefix cache
            seconds, _ = timed(partial(memlaw_steps, adapter, data, pad_id, args.steps, None))
            adapter.remove()
            runs["uncached"].append(seconds / args.steps)

            one_by_one = 0.0
            for rank in RANKS:
                adapter = BypassConfig(rank=rank).attach(model)
                build, seconds, peak = cached_run(adapter, data, pad_id, args.steps)
                adapter.remove()
                one_by_one += seconds / args.steps
                if rank == 8:
                    runs["cache build"].append(build)
                    runs["memlaw"].append(seconds / args.steps)
                    memory["memlaw"].append(peak)
            runs["one by one"].append(one_by_one)

            stack = BypassAdapter(model, [BypassConfig(rank=r) for r in RANKS], [0] * len(RANKS))
            _, seconds, peak = cached_run(stack, data, pad_id, args.steps)
            stack.remove()
            runs["stacked"].append(seconds / args.steps)
            memory["stacked"].append(peak)

            stack = BypassAdapter(model, [BypassConfig(rank=r) for r in RANKS], [0] * len(RANKS))
            _, seconds, peak = cached_run(stack, data, pad_id, args.steps, checkpoint_layers=True)
            stack.remove()
            runs["checkpointed"].append(seconds / args.steps)
            memory["checkpointed"].append(peak)

        med = {k: statistics.median(v) for k, v in runs.items()}
        mem = {k: statistics.median(v) for k, v in memory.items()}
        k = len(RANKS)
        print(f"seconds per training step (median of {args.repeats}; {args.steps} steps each):")
        print(f"  reference-style loop, one adapter   {med['reference']:.3f}")
        print(f"  memlaw without the prefix cache     {med['uncached']:.3f}")
        print(
            f"  memlaw, one cached adapter          {med['memlaw']:.3f}   "
            f"(prefix cache built once: {med['cache build']:.3f} s)"
        )
        print(f"  memlaw, {k} cached adapters in turn  {med['one by one']:.3f}")
        print(f"  memlaw, {k} adapters stacked         {med['stacked']:.3f}")
        print(
            f"  the same, layers checkpointed       {med['checkpointed']:.3f}   "
            f"({med['checkpointed'] / med['stacked']:.2f}x the time of stacked)"
        )
        print(f"speedup per probe: {med['reference'] / med['memlaw']:.2f}x")
        size = stack_size(model.device, data, len(data.items))
        chosen = f"stacks of {size}" if size > 1 else "one by one"
        print(f"speedup per {k}-rank sweep (ranks {RANKS}):")
        print(
            f"  stacked {k * med['reference'] / med['stacked']:.2f}x, cached one by one "
            f"{k * med['reference'] / med['one by one']:.2f}x; run_probes uses {chosen} on {model.device.type}"
        )
        print(
            f"stacking vs cached one by one: {med['one by one'] / med['stacked']:.2f}x "
            "(>1: stacking is faster per adapter)"
        )
        print("peak resident memory above the loaded model during training (MB, median):")
        print(
            f"  reference {mem['reference']:.0f}, memlaw single {mem['memlaw']:.0f}, stacked {k}: {mem['stacked']:.0f} "
            f"({mem['stacked'] / max(mem['memlaw'], 1):.2f}x single), stacked {k} checkpointed: "
            f"{mem['checkpointed']:.0f} ({mem['checkpointed'] / max(mem['memlaw'], 1):.2f}x single)"
        )


if __name__ == "__main__":
    main()
