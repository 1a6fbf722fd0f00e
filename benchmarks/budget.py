"""Does ``--until converged`` measure capacity? Converged probes against 2× and 4× their steps.

The cells of a sweep config trained ``--until converged`` (read from its results store, or
run into it: resumable, and the demo's store serves as is) stopped after S steps each, at
certification or at a plateau of their last learning rate. Each converged cell is trained
again from scratch for fixed budgets of 2·S and 4·S steps under the reference's schedule
(linear decay to 0, which anneals to the end), into a second store. If the rule stops where
the capacity is, the longer runs reach no lower loss than the tolerance allows. Printed: a
table per cell, the largest drop, and the law fitted on each set of cells with its 95 %
intervals (are the constants, or at the logarithmic limit the identified rates, stable
within them?) and the rank each plans.

    python benchmarks/budget.py examples/demo-smollm2.yaml --store runs/demo/capacity.db \
        --set autocast=true --ranks 1 2 --lengths 24 32 48 64 96      # the table in docs/demo.md
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from transformers.utils import logging

from memlaw.cli.sweep import parse_overrides
from memlaw.errors import MemlawInputError
from memlaw.law import MemoryLaw, plan_rank
from memlaw.law.fit import POINTS_PER_CONSTANT, describe_rates
from memlaw.law.points import points_from_rows
from memlaw.probe import ProbeConfig
from memlaw.sweep import ResultsStore, SweepConfig, cell_key, load_sweep, run_sweep


def run_cells(cells: list[ProbeConfig], store: ResultsStore) -> list[tuple[ProbeConfig, dict]]:
    """Each cell with its finished row, training those the store does not hold yet."""
    started = time.perf_counter()
    report = run_sweep(SweepConfig([{k: [v] for k, v in asdict(c).items()} for c in cells], {}), store)
    print(f"  {report.done} trained ({report.skipped} already stored) in {time.perf_counter() - started:.0f} s")
    rows = {r["cell_key"]: r for r in store.rows({"status": "done"})}
    return [(c, rows[cell_key(c)]) for c in cells if cell_key(c) in rows]


def describe_law(name: str, cells: list[tuple[ProbeConfig, dict]], store: Path, plan_length: int) -> str:
    # the longer runs end under linear decay, so they count as budget-limited: keep them all
    law = MemoryLaw(bootstrap=500, seed=0, keep_budget_limited=True)
    try:
        law.fit_points(points_from_rows([row for _, row in cells], store))
    except MemlawInputError as err:  # too few unsaturated cells is a finding here, not a crash
        return f"  {name}: not fitted ({err})"
    rates = law.log_limit_rates()
    if rates is None:
        constants = ", ".join(
            f"{k} {v:.3g} [{law.ci_[k][0]:.3g}, {law.ci_[k][1]:.3g}]" for k, v in law.constants_.items()
        )
    else:  # C and b are not identified there: compare what is
        constants = f"logarithmic limit, {describe_rates(rates)}"
    few = " (few points: wide intervals)" if law.n_points_ < POINTS_PER_CONSTANT * len(law.constants_) else ""
    plan = plan_rank(law, plan_length, ratio=1.0)
    low, high = plan.interval
    return (
        f"  {name}: {law.n_points_} cells fitted, {constants}{few}; RMSE {law.rmse_:.3f} nats; "
        f"plans rank {plan.rank:g} for {plan_length} tokens (95% CI [{low:.3g}, {high:.3g}])"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="sweep config whose cells train --until converged")
    parser.add_argument("--store", required=True, help="its results store (run into it where cells are missing)")
    parser.add_argument("--longer-store", help="store of the 2·S and 4·S runs (default: next to --store)")
    parser.add_argument("--set", action="append", default=[], metavar="SETTING=VALUE", help="as memlaw sweep --set")
    parser.add_argument("--ranks", type=int, nargs="+", help="only these ranks of the sweep")
    parser.add_argument("--lengths", type=int, nargs="+", help="only these lengths of the sweep")
    parser.add_argument("--factors", type=int, nargs="+", default=[2, 4], help="budgets as multiples of S")
    parser.add_argument("--plan-length", type=int, default=96, help="ℓ each set's law plans a rank for")
    parser.add_argument("--tolerance", type=float, default=0.05, help="nats: largest final-loss drop called 'no move'")
    args = parser.parse_args()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    cells = [
        c
        for c in load_sweep(args.config, parse_overrides(args.set)).cells()
        if (not args.ranks or c.rank in args.ranks) and (not args.lengths or c.length in args.lengths)
    ]
    if not cells or any(c.until != "converged" for c in cells):
        raise SystemExit(f"{args.config}: needs cells (after --ranks/--lengths) that train --until converged")
    store_path = Path(args.store)
    longer_path = Path(args.longer_store or store_path.with_name(store_path.stem + "-longer.db"))
    print(f"{len(cells)} cells until converged ({store_path}):")
    with ResultsStore(store_path) as store:
        converged = run_cells(cells, store)
    # certified cells stopped at recall, whatever capacity they had left: nothing to check there
    judged = [(c, r) for c, r in converged if not r["certified"]]
    longer_cells = {
        factor: [replace(c, until="budget", steps=factor * r["steps"]) for c, r in judged] for factor in args.factors
    }
    print(f"{len(judged)} uncertified cells trained for {', '.join(f'{f}·S' for f in args.factors)} ({longer_path}):")
    with ResultsStore(longer_path) as store:
        longer = {factor: run_cells(configs, store) for factor, configs in longer_cells.items()}
    factors = " | ".join(f"{f}·S budget" for f in args.factors)
    print(f"\n| rank | ℓ | stop | steps S | final loss at S | {factors} | largest drop | within tolerance |")
    print("|---:|---:|---|---:|---:|" + "---:|" * len(args.factors) + "---:|---|")
    drops = []
    finals_of = {f: {cell_key(c): row["final_loss"] for c, row in longer[f]} for f in args.factors}
    for (_, row), *runs in zip(judged, *longer_cells.values(), strict=True):
        finals = [finals_of[f].get(cell_key(run), float("nan")) for f, run in zip(args.factors, runs, strict=True)]
        drop = row["final_loss"] - min(finals)
        drops.append(drop)
        print(
            f"| {row['rank']:g} | {row['length']:g} | {row['stop_reason']} | {row['steps']:,.0f} | "
            f"{row['final_loss']:.3f} | "
            + " | ".join(f"{f:.3f}" for f in finals)
            + f" | {drop:+.3f} | {'yes' if drop <= args.tolerance else 'NO'} |"
        )
    if drops:
        held = sum(d <= args.tolerance for d in drops)
        print(
            f"\nlonger training lowered the final loss by at most {max(drops):+.3f} nats, median "
            f"{float(np.median(drops)):+.3f} (tolerance {args.tolerance}); within tolerance: {held} of {len(drops)}"
        )
    print(f"({len(converged) - len(judged)} certified cells not judged: they stop at recall)")
    print("law fitted on each set (saturation: final loss < ln 2; 95% intervals):")
    print(describe_law("until converged", converged, store_path, args.plan_length))
    for factor, rows in longer.items():
        print(describe_law(f"{factor}·S budget", rows, longer_path, args.plan_length))


if __name__ == "__main__":
    main()
