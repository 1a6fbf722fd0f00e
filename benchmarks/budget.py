"""Does ``--until converged`` measure capacity? Converged probes against 2× and 4× their steps.

For a few cells (default model, random tokens, bypass at the default layer), each probe is
trained ``--until converged``; it stops after S steps, at certification or at a plateau of its
last learning rate. The same cell is then trained again from scratch for a fixed budget of 2·S
and 4·S steps under the reference's schedule (linear decay to 0, which anneals to the end). If
the rule stops where the capacity is, the longer runs reach no lower loss than the tolerance
allows. Printed: a table per cell, the largest gap, and the law fitted on each set of cells with
its 95 % intervals (are the constants stable within them?).

    python benchmarks/budget.py                        # ranks 1 2 × ℓ 48 64, tolerance 0.05
    python benchmarks/budget.py --ranks 1 2 --lengths 48 64 96 --bf16
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from transformers.utils import logging

from memlaw.errors import MemlawInputError
from memlaw.law import LawPoints, MemoryLaw
from memlaw.law.fit import POINTS_PER_CONSTANT
from memlaw.models import load_model
from memlaw.probe import ProbeConfig, run_probe, run_probes


def points(results) -> LawPoints:
    column = lambda name: np.array([float(getattr(r, name)) for r in results])
    return LawPoints(
        rank=np.array([float(r.placement["rank"]) for r in results]), length=column("length"),
        delta_loss=column("delta_loss"), final_loss=column("final_loss"), certified=column("certified"),
    )  # fmt: skip


def describe_law(name: str, results) -> str:
    try:
        law = MemoryLaw(bootstrap=500, seed=0).fit_points(points(results))
    except MemlawInputError as err:  # too few unsaturated cells is a finding here, not a crash
        return f"  {name}: not fitted ({err})"
    constants = ", ".join(f"{k} {v:.3g} [{law.ci_[k][0]:.3g}, {law.ci_[k][1]:.3g}]" for k, v in law.constants_.items())
    few = " (few points: wide intervals)" if law.n_points_ < POINTS_PER_CONSTANT * len(law.constants_) else ""
    return f"  {name}: {law.n_points_} cells fitted, {constants}{few}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--lengths", type=int, nargs="+", default=[48, 64])
    parser.add_argument("--max-steps", type=int, default=2000)
    parser.add_argument("--tolerance", type=float, default=0.05, help="nats: largest final-loss gap called 'no move'")
    parser.add_argument("--bf16", action="store_true", help="train under bf16 autocast (on a CPU with bf16 units)")
    args = parser.parse_args()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    loaded = load_model(device="cpu")
    base = {"data": "longcontext", "ratio": 1.0, "autocast": args.bf16}
    configs = [
        ProbeConfig(**base, length=length, rank=rank, until="converged", max_steps=args.max_steps)
        for length in args.lengths
        for rank in args.ranks
    ]
    started = time.perf_counter()
    converged = run_probes(configs, loaded)
    print(f"{len(configs)} cells until converged (cap {args.max_steps}): {time.perf_counter() - started:.0f} s")
    longer: dict[int, list] = {2: [], 4: []}
    for result in converged:
        for factor in longer:
            config = ProbeConfig(
                **base, length=result.length, rank=result.placement["rank"], steps=factor * result.steps
            )
            probe = run_probe(config, loaded)
            probe.adapter.remove()
            longer[factor].append(probe)
    print(
        "\n| rank | ℓ | stop | steps S | certified | final loss at S | 2·S budget | 4·S budget | "
        "largest drop | within tolerance |"
    )
    print("|---:|---:|---|---:|---|---:|---:|---:|---:|---|")
    gaps = []
    for i, result in enumerate(converged):
        finals = [result.final_loss] + [longer[f][i].final_loss for f in longer]
        drop = result.final_loss - min(finals[1:])
        certified = "/".join("yes" if r.certified else "no" for r in [result] + [longer[f][i] for f in longer])
        if result.certified:  # stopped at certification: saturated, never fitted, so not judged here
            verdict = "n/a (certified)"
        else:
            gaps.append(drop)
            verdict = "yes" if drop <= args.tolerance else "NO"
        print(
            f"| {result.placement['rank']} | {result.length} | {result.stop_reason} | {result.steps} | {certified} | "
            + " | ".join(f"{f:.3f}" for f in finals)
            + f" | {drop:+.3f} | {verdict} |"
        )
    if gaps:
        held = sum(g <= args.tolerance for g in gaps)
        print(
            f"\nuncertified cells: longer training lowered the final loss by at most {max(gaps):+.3f} nats "
            f"(tolerance {args.tolerance}); within tolerance: {held} of {len(gaps)}"
        )
    print("law fitted on each set (saturation: certified cells; 95% intervals):")
    print(describe_law("until converged", converged))
    for factor, results in longer.items():
        print(describe_law(f"{factor}·S budget", results))


if __name__ == "__main__":
    main()
