"""Which saturation rule makes the law honest? Fit one store under each rule, predict another.

``memlaw fit`` leaves out saturated cells, judged either by mean final loss below ln 2
(``--saturation loss``) or by certification (``--saturation certified``). Cells converged
without certifying but below ln 2 are fitted by the second rule only. This fits the law on
``--fit`` under each rule, then predicts ΔL for the cells of each ``--check`` store that the
fit never saw and that neither rule calls saturated, and prints the held-out RMSE per rule.

    python benchmarks/saturation_rule.py --fit runs/boundary.db --check runs/other.db runs/demo/capacity.db
"""

from __future__ import annotations

import argparse

import numpy as np

from memlaw.constants import CERTIFY_LOSS
from memlaw.law import MemoryLaw, load_points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fit", required=True, help="results store (or CSV) the laws are fitted on")
    parser.add_argument("--check", nargs="+", required=True, help="stores whose unseen cells are predicted")
    args = parser.parse_args()
    train = load_points(args.fit)
    laws = {rule: MemoryLaw(saturation=rule, bootstrap=0).fit_points(train) for rule in ("loss", "certified")}
    for rule, law in laws.items():
        print(f"--saturation {rule}: {law.n_points_} cells fitted ({law.excluded_words()})")
    seen = set(zip(train.rank.tolist(), train.length.tolist(), strict=True))
    for source in args.check:
        points = load_points(source)
        cells = list(zip(points.rank.tolist(), points.length.tolist(), strict=True))
        held = np.array([c not in seen for c in cells]) & (points.final_loss >= CERTIFY_LOSS)
        names = ", ".join(f"r{r:g} ℓ{length:g}" for (r, length), h in zip(cells, held, strict=True) if h)
        print(f"{source}: {int(held.sum())} unseen unsaturated cells ({names})")
        for rule, law in laws.items():
            errors = law.predict(points.rank[held], points.length[held]) - points.delta_loss[held]
            print(
                f"  --saturation {rule}: held-out RMSE {np.sqrt(np.mean(errors**2)):.3f} nats "
                f"(errors {', '.join(f'{e:+.2f}' for e in errors)})"
            )


if __name__ == "__main__":
    main()
