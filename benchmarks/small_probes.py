"""Small probes (ℓ = 16 to 128): where a step's time goes, what stacking buys, and a whole small grid.

On the default model (SmolLM2-135M-Instruct, float32 on this machine's CPU; random tokens, the
chat prompt, the bypass at the default layer, ranks cycling through 1, 4, 16, 64):

1. For each ℓ and each number K of stacked adapters: seconds per training step per adapter
   (median of ``--repeats``), split into the trainer's phases (``memlaw.forward``, ``.objective``,
   ``.backward``, ``.optimizer``, ``.check``, read from ``torch.profiler`` over one more run and
   scaled to the median), and the speedup per adapter against K = 1.
2. For each ℓ: one probe's cost outside its steps (prefix-cache build, initial evaluation, final
   evaluation, greedy decoding), from the same labels.
3. With ``--grid-steps N``: a grid (ranks 1, 4, 16, 64 × ℓ 32, 64, 128, N steps each) run one by
   one (``run_probes(max_copies=1)``) and the way ``run_probes`` picks by default, in this
   process, ending with ``small-grid speedup vs one by one: X.XXx`` (median of ``--repeats``);
   with ``--bf16`` also the default way under bf16 autocast, an option rather than the default.

    python benchmarks/small_probes.py                                  # parts 1 and 2
    python benchmarks/small_probes.py --lengths 32 --copies 1 8 --grid-steps 200
    python benchmarks/small_probes.py --skip-steps --grid-steps 200 --bf16   # the grid, also in bf16
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile
from transformers.utils import logging

from memlaw.engine.prefix_cache import build_prefix_cache
from memlaw.models import load_model
from memlaw.placements import BypassAdapter, BypassConfig
from memlaw.probe import ProbeConfig, build_data, run_probe, run_probes
from memlaw.training import SFT, TrainConfig, train_copies

RANKS = (1, 4, 16, 64)
PHASES = ("forward", "objective", "backward", "optimizer", "check")
OUTSIDE = ("cache_build", "initial_eval", "final_eval", "greedy")


def labelled_seconds(prof) -> dict[str, float]:
    """Wall seconds spent under each ``memlaw.*`` label (CPU time of the label's own range)."""
    totals: dict[str, float] = defaultdict(float)
    for event in prof.events():
        if event.name.startswith("memlaw."):
            totals[event.name.removeprefix("memlaw.")] += event.time_range.elapsed_us() / 1e6
    return totals


def train(model, data, pad_id: int, copies: int, steps: int, profiled: bool = False):
    """(seconds of ``steps`` steps of K stacked adapters, labelled seconds when ``profiled``)."""
    ranks = [RANKS[j % len(RANKS)] for j in range(copies)]
    adapter = BypassAdapter(model, [BypassConfig(rank=r) for r in ranks], list(range(copies)))
    cache = build_prefix_cache(model, data, adapter, pad_id=pad_id)
    config = TrainConfig(steps=steps, batch_size=len(data.items))
    try:
        if profiled:
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                train_copies(adapter, data, SFT(), config, pad_id=pad_id, cache=cache, seeds=list(range(copies)))
            return None, labelled_seconds(prof)
        started = time.perf_counter()
        train_copies(adapter, data, SFT(), config, pad_id=pad_id, cache=cache, seeds=list(range(copies)))
        return time.perf_counter() - started, None
    finally:
        adapter.remove()


def step_table(loaded, lengths: list[int], copies: list[int], steps: int, repeats: int) -> None:
    model, pad_id = loaded.model, loaded.tokenizer.pad_token_id
    print("\n## seconds per step per adapter (median), split by phase; speedup per adapter vs K = 1")
    print(
        f"{'ℓ':>4} {'tokens':>6} {'K':>3} {'s/step':>8} "
        + " ".join(f"{p:>9}" for p in PHASES)
        + f" {'other':>7} {'vs K=1':>7}"
    )
    for length in lengths:
        data = build_data(ProbeConfig(data="longcontext", length=length), loaded.tokenizer, len(loaded.tokenizer))
        single = None
        for k in copies:
            train(model, data, pad_id, k, 2)  # warm-up: allocator and thread pools
            per_step = statistics.median(train(model, data, pad_id, k, steps)[0] for _ in range(repeats)) / steps / k
            _, labelled = train(model, data, pad_id, k, steps, profiled=True)
            labelled_total = sum(labelled.values())
            # phases as shares of the profiled run, applied to the unprofiled median
            shares = {p: labelled.get(p, 0.0) / max(labelled_total, 1e-12) for p in PHASES}
            single = single or per_step
            accounted = sum(labelled.values()) / steps / k
            print(
                f"{length:>4} {data.max_sequence_length:>6} {k:>3} {per_step:>8.4f} "
                + " ".join(f"{per_step * shares[p]:>9.4f}" for p in PHASES)
                + f" {max(0.0, per_step - accounted):>7.4f} {single / per_step:>6.2f}x"
            )


def outside_steps(loaded, lengths: list[int]) -> None:
    print("\n## one probe outside its steps (seconds): ", ", ".join(OUTSIDE))
    for length in lengths:
        config = ProbeConfig(data="longcontext", length=length, rank=8, steps=1)
        run_probe(config, loaded).adapter.remove()  # warm-up
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run_probe(config, loaded).adapter.remove()
        labelled = labelled_seconds(prof)
        print(f"ℓ = {length:>4}: " + ", ".join(f"{name} {labelled.get(name, 0.0):.3f}" for name in OUTSIDE))


def grid(loaded, steps: int, repeats: int, bf16: bool) -> None:
    def configs(autocast: bool) -> list[ProbeConfig]:
        return [
            ProbeConfig(data="longcontext", length=length, rank=rank, steps=steps, autocast=autocast)
            for length in (32, 64, 128)
            for rank in RANKS
        ]

    def timed(configs: list[ProbeConfig], **options) -> tuple[float, list]:
        started = time.perf_counter()
        results = run_probes(configs, loaded, **options)
        return time.perf_counter() - started, results

    old, new, autocast = [], [], []
    for _ in range(repeats):
        old.append(timed(configs(False), max_copies=1)[0])
        seconds, results = timed(configs(False))
        new.append(seconds)
        if bf16:
            autocast.append(timed(configs(True))[0])
    chosen = sorted({r.stacked_copies for r in results})
    print(f"\n## small grid: ranks {RANKS} × ℓ 32, 64, 128, {steps} steps each ({len(results)} probes)")
    show = lambda times: " ".join(f"{t:.1f}" for t in times)
    print(f"one by one: {show(old)} s; default (stacks of {chosen}): {show(new)} s")
    if bf16:
        print(f"default with --autocast true (bf16): {show(autocast)} s")
        print(f"bf16 stacked vs float32 one by one: {statistics.median(old) / statistics.median(autocast):.2f}x")
    print(f"small-grid speedup vs one by one: {statistics.median(old) / statistics.median(new):.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--steps", type=int, default=10, help="training steps per timed run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--grid-steps", type=int, default=0, help="also time the small grid with this many steps")
    parser.add_argument("--skip-steps", action="store_true", help="skip parts 1 and 2")
    parser.add_argument("--bf16", action="store_true", help="also time the grid with bf16 autocast (an option)")
    args = parser.parse_args()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    loaded = load_model(device="cpu")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, SmolLM2-135M-Instruct float32 on CPU")
    if not args.skip_steps:
        step_table(loaded, args.lengths, args.copies, args.steps, args.repeats)
        outside_steps(loaded, args.lengths)
    if args.grid_steps:
        grid(loaded, args.grid_steps, args.repeats, args.bf16)


if __name__ == "__main__":
    main()
