"""MemFT against SFT at the same budget, near capacity, on the default model.

For each cell (data, rank, ℓ) and each method, one probe with the same epochs, learning rate,
batch size and seed: greedy exact match, greedy token accuracy, the share of tokens with
p > 0.5, whether every token is above it (certified) and the first certified step. Cells sit
near the capacity measured by `make demo` (rank 8 holds about 35 random tokens at 100
epochs), where the methods can differ at all. Run:

    python benchmarks/memft_vs_sft.py                       # 4 cells x 3 methods, seed 0 (~10 min on 2 cores)
    python benchmarks/memft_vs_sft.py --seeds 0 1 2 --epochs 150 --out runs/memft_vs_sft.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from transformers.utils import logging

from memlaw.models import load_model
from memlaw.probe import ProbeConfig, run_probe

CELLS = [  # (data, ratio, rank, length)
    ("phonebook", 1.0, 4, 60),
    ("phonebook", 1.0, 8, 120),
    ("longcontext", 1.0, 4, 24),
    ("longcontext", 1.0, 8, 48),
]
METHODS = ["sft", "memft-ot", "memft-sw"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", help="also write every probe's numbers as JSON here")
    args = parser.parse_args()
    logging.set_verbosity_error()
    loaded = load_model()
    rows = []
    print(f"{args.epochs} epochs, lr {args.lr}, seeds {args.seeds}; bypass at layer 20 of SmolLM2-135M-Instruct")
    print(f"{'data':12s} {'r':>2s} {'ℓ':>4s} {'method':9s} {'exact':>6s} {'tok acc':>7s} {'p>0.5':>6s} "
          f"{'certified':>9s} {'cert step':>9s} {'L_final':>8s} {'s':>5s}")  # fmt: skip
    for data, ratio, rank, length in CELLS:
        for method in args.methods:
            runs = []
            for seed in args.seeds:
                config = ProbeConfig(
                    data=data, ratio=ratio, rank=rank, length=length, method=method, epochs=args.epochs,
                    lr=args.lr, seed=seed,
                )  # fmt: skip
                start = time.perf_counter()
                result = run_probe(config, loaded)
                result.adapter.remove()
                runs.append({
                    "data": data, "rank": rank, "length": length, "method": method, "seed": seed,
                    "exact_match": result.exact_match, "token_accuracy": result.token_accuracy,
                    "frac_above_half": result.frac_above_half, "certified": result.certified,
                    "certified_step": result.certified_step, "final_loss": result.final_loss,
                    "seconds": time.perf_counter() - start,
                })  # fmt: skip
            rows += runs
            mean = lambda key, runs=runs: statistics.fmean(float(r[key]) for r in runs)
            steps = [r["certified_step"] for r in runs if r["certified_step"] is not None]
            print(
                f"{data:12s} {rank:2d} {length:4d} {method:9s} {mean('exact_match'):6.2f} "
                f"{mean('token_accuracy'):7.1%} "
                f"{mean('frac_above_half'):6.1%} {sum(r['certified'] for r in runs):>4d}/{len(runs):<4d} "
                f"{statistics.median(steps) if steps else '-':>9} {mean('final_loss'):8.4f} {mean('seconds'):5.0f}"
            )
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
