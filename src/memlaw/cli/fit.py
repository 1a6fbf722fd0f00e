"""``memlaw fit``: fit the Parametric Memory Law to stored probes (or a CSV) and save it."""

from __future__ import annotations

import argparse

from memlaw.constants import CERTIFY_LOSS
from memlaw.io import write_json_atomic
from memlaw.law.compare import compare_forms, heldout_error
from memlaw.law.fit import FORMS, LOSSES, MemoryLaw
from memlaw.law.points import load_points


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("fit", help="fit ΔL = C·r^α·ℓ^(−β) + b to probe results", description=__doc__)
    parser.add_argument(
        "--from", dest="source", required=True, help="results store (.db) or CSV (rank,length,delta_loss,...)"
    )
    parser.add_argument("--out", help="save the fitted law as JSON here")
    parser.add_argument("--form", default="full", choices=FORMS, help="with offset b (full) or without")
    parser.add_argument("--loss", default="squares", choices=LOSSES, help="least squares or Huber")
    parser.add_argument(
        "--saturation-loss", type=float, default=CERTIFY_LOSS, help="exclude points whose final loss is below this"
    )
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples for the 95%% intervals")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    points = load_points(args.source)
    options = {"form": args.form, "loss": args.loss, "saturation_loss": args.saturation_loss, "seed": args.seed}
    law = MemoryLaw(bootstrap=args.bootstrap, **options).fit(
        points.rank, points.length, points.delta_loss, points.final_loss
    )
    heldout = heldout_error(points, **options)
    print(
        f"{law.n_points_} points fitted, {len(law.excluded_)} excluded as saturated (final loss < {args.saturation_loss:.4g})"
    )
    print("ΔL = C · r^α · ℓ^(−β) + b")
    for name, value in (("C", law.C_), ("alpha", law.alpha_), ("beta", law.beta_), ("b", law.b_)):
        low, high = law.ci_.get(name, (float("nan"), float("nan")))
        print(f"  {name:5s} = {value!r}   95% CI [{low:.6g}, {high:.6g}]")
    held = "n/a" if heldout is None else f"{heldout:.4g}"
    print(f"R² = {law.r2_:.5f}, RMSE = {law.rmse_:.4g} nats, held-out RMSE (largest rank / longest ℓ) = {held}")
    print("alternatives on the same points (held-out RMSE, lower is better):")
    scored = []
    for row in compare_forms(points, bootstrap=0, seed=args.seed):
        if "error" in row:
            print(f"  {row['name']:36s} not fitted: {row['error']}")
            continue
        score = row["heldout_rmse"]
        scored.append((float("inf") if score is None else score, row["name"]))
        print(f"  {row['name']:36s} {'n/a' if score is None else f'{score:.4g}'}")
    finite = [s for s in scored if s[0] != float("inf")]
    if finite:
        print(f"best by held-out error: {min(finite)[1]}")
    print("valid only for the training budget, placement, data and method these probes used")
    if args.out:
        write_json_atomic(args.out, law.to_dict(points.provenance))
        print(f"law: {args.out}")
    return 0
