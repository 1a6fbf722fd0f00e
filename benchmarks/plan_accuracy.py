"""Are memlaw's plans right? Plan a rank for data sets the law never saw, then train and look.

For every set: the law plans the smallest rank for all of it (``memlaw.plan(data=...)``,
exactly what ``memlaw plan --data`` runs), once for certification with
probability ``--confidence`` (the default plan, when the law has a certification model) and
once for a mean final loss below ln 2. The set is then trained as the law's probes trained
(``memlaw plan --verify``) at both planned ranks and at half the first. With ``--bisect``, the
smallest certifying rank is also searched below the planned one. Other laws
(``--compare``) are scored on the same trainings: their predicted final loss against the
measured one, which is the held-out evidence for choosing a law form.

Every training is appended to ``--out`` (JSONL) and skipped when the script runs again, so an
interrupted run resumes. The table printed at the end is docs/planning.md's.

    python benchmarks/plan_accuracy.py --law src/memlaw/laws/smollm2-135m-instruct.json \\
        --compare runs/calibrate/law-full.json --out runs/plan-accuracy.jsonl --bisect phonebook-120,facts,prose
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import string
from pathlib import Path

import memlaw
from memlaw.constants import CERTIFY_LOSS
from memlaw.law.library import load_law
from memlaw.law.plan import margin_for
from memlaw.law.verify import law_config
from memlaw.probe.data import prepare
from memlaw.probe.run import run_probe

HERE = Path(__file__).parent / "data"


def facts_file(folder: Path, count: int = 12, seed: int = 0) -> Path:
    """Made-up facts whose answers mix letters and digits (locker codes, plates, room numbers)."""
    rng = random.Random(seed)
    people = ["Ada", "Bram", "Chiara", "Dmitri", "Esme", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Kaia", "Lior"]
    lines = []
    for name in people[:count]:
        code = "".join(rng.choice(string.ascii_uppercase) for _ in range(2)) + str(rng.randrange(100, 1000))
        room = f"{rng.choice('ABCDEFG')}{rng.randrange(1, 9)}.{rng.randrange(10, 60)}"
        lines.append(json.dumps({"key": f"Locker and office of {name}?", "value": f"locker {code}, office {room}"}))
    path = folder / "facts.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def data_sets(folder: Path) -> dict[str, dict]:
    """Name -> probe data settings of each held-out set (none of them in the calibration grid)."""
    return {
        "phonebook-60": {"data": "phonebook", "length": 60},
        "phonebook-120": {"data": "phonebook", "length": 120},
        "phonebook-240": {"data": "phonebook", "length": 240},
        # larger sets, for adapters that hold more per rank (the PEFT law plans rank 1 for the rest)
        "phonebook-480": {"data": "phonebook", "length": 480},
        "phonebook-960": {"data": "phonebook", "length": 960},
        "facts": {"data": str(facts_file(folder))},
        "prose": {"data": str(HERE / "prose.txt")},
        "prose-rho0.2": {"data": "longcontext", "text": str(HERE / "prose.txt"), "ratio": 0.2, "length": 100},
        "code": {"data": str(HERE / "code.txt")},
        "chat": {"data": str(HERE / "chat.jsonl")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--law", required=True, help="the law whose plans are checked")
    parser.add_argument("--compare", nargs="*", default=[], help="other laws scored on the same trainings")
    parser.add_argument("--out", required=True, help="JSONL of trainings (resumed when it exists)")
    parser.add_argument("--sets", help="comma list of sets to run (default: all)")
    parser.add_argument("--bisect", default="", help="comma list of sets whose smallest certifying rank is searched")
    parser.add_argument("--confidence", type=float, default=0.9, help="certification probability plans aim for")
    args = parser.parse_args()

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    folder = out.parent / f"{out.stem}-data"
    folder.mkdir(exist_ok=True)
    sets = data_sets(folder)
    chosen = args.sets.split(",") if args.sets else list(sets)
    law = load_law(args.law)
    others = {name: load_law(name) for name in args.compare}
    done = {(r["set"], r["rank"]): r for r in map(json.loads, out.read_text().splitlines())} if out.exists() else {}
    loaded = None

    def train(name: str, rank: int, plan) -> dict:
        nonlocal loaded
        if (name, rank) in done:
            return done[(name, rank)]
        config = law_config(law, rank=rank, **sets[name])
        if loaded is None:
            loaded, _ = prepare(config, None)
        result = run_probe(config, loaded)
        result.adapter.remove()
        row = {
            "set": name, "rank": rank, "planned_rank": plan["rank"], "length": result.length,
            "initial_loss": result.initial_loss, "final_loss": result.final_loss, "certified": result.certified,
            "exact_match": result.exact_match, "frac_above_half": result.frac_above_half, "steps": result.steps,
            "seconds": result.seconds, "stop_reason": result.stop_reason,
        }  # fmt: skip
        with out.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
        done[(name, rank)] = row
        predicted = predicted_final_loss(law, row)
        print(
            f"{name} rank {rank}: final loss {row['final_loss']:.3f} (predicted {predicted:.3f}), certified "
            f"{row['certified']}, exact {row['exact_match']:.0%}, {row['steps']} steps, {row['seconds']:.0f} s",
            flush=True,
        )
        return row

    confidence = None
    if law.certification_ is not None:
        confidence = args.confidence
        margin = margin_for(law, confidence)
        print(f"plans for certification with probability {confidence:.0%}: capacity margin >= {margin:.3f}")
    summary = []
    for name in chosen:
        data, options = sets[name]["data"], {k: v for k, v in sets[name].items() if k != "data"}
        # planned exactly as memlaw plan --data plans (the content warning included)
        planned = memlaw.plan(data=data, data_options=options, law=args.law, confidence=confidence, loaded=loaded)
        loaded = planned.loaded
        mean_plan = memlaw.plan(data=data, data_options=options, law=args.law, target_loss=CERTIFY_LOSS, loaded=loaded)
        tokens, start = planned.content["file_length"], planned.content["file_initial_loss"]
        plan = {
            "rank": int(planned.rank),
            "steps": None if planned.prediction.predicted_steps is None else planned.prediction.predicted_steps[0],
            "probability": planned.prediction.certify_probability,
            "warnings": planned.warnings,
        }
        print(
            f"{name}: {tokens} tokens at initial loss {start:.3f}: planned rank {plan['rank']} (predicted final "
            f"loss {planned.prediction.predicted_final_loss:.3f}); for a mean below ln 2: {mean_plan.rank:g}",
            flush=True,
        )
        at_plan = train(name, plan["rank"], plan)
        at_mean_plan = train(name, int(mean_plan.rank), plan)
        half = plan["rank"] // 2
        at_half = train(name, half, plan) if half >= 1 else None
        smallest = None
        if name in args.bisect.split(",") and at_plan["certified"]:
            low, high = (half, plan["rank"]) if at_half is not None and not at_half["certified"] else (0, plan["rank"])
            if at_half is not None and at_half["certified"]:
                high = half
            while high - low > 1:  # low fails (0 always does), high certifies
                middle = (low + high) // 2
                low, high = (low, middle) if train(name, middle, plan)["certified"] else (middle, high)
            smallest = high
        summary.append({
            "set": name, "tokens": tokens, "initial_loss": start, "plan": plan["rank"],
            "probability": plan["probability"], "steps": plan["steps"], "at_plan": at_plan, "at_half": at_half,
            "smallest": smallest, "mean_plan": int(mean_plan.rank), "at_mean_plan": at_mean_plan,
        })  # fmt: skip
    print_table(summary, {"law": law, **others}, [row for row in done.values() if row["set"] in chosen])


def predicted_final_loss(law, training: dict) -> float:
    """What ``law`` predicts for a training's measured rank, length and initial loss."""
    start = training["initial_loss"]
    return float(start - law.predict(training["rank"], training["length"], start))


def print_table(summary: list[dict], laws: dict, trainings: list[dict]) -> None:
    """The table of docs/planning.md, then the shares, ratios and errors: predictions are scored on every
    training of these sets (``trainings``), at whatever rank it ran."""
    print("\n| set | tokens | initial loss | planned rank (P certify) | final loss at plan (predicted) | "
          "certified at plan | exact match | certified at half | smallest certifying rank | rank for mean < ln 2: "
          "certified |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---|---:|---|---:|---|")
    for row in summary:
        plan, half = row["at_plan"], row["at_half"]
        predicted = predicted_final_loss(laws["law"], plan)
        probability = "" if row["probability"] is None else f" ({row['probability']:.0%})"
        print(
            f"| {row['set']} | {row['tokens']} | {row['initial_loss']:.2f} | {row['plan']}{probability} | "
            f"{plan['final_loss']:.3f} ({predicted:.3f}) | {'yes' if plan['certified'] else 'no'} | "
            f"{plan['exact_match']:.0%} | {'—' if half is None else ('yes' if half['certified'] else 'no')} | "
            f"{'—' if row['smallest'] is None else row['smallest']} | "
            f"{row['mean_plan']}: {'yes' if row['at_mean_plan']['certified'] else 'no'} |"
        )
    plans = [row["at_plan"] for row in summary]
    halves = [row["at_half"] for row in summary if row["at_half"] is not None]
    print(f"\ncertified at the planned rank: {sum(p['certified'] for p in plans)}/{len(plans)}")
    print(f"certified at half the planned rank: {sum(h['certified'] for h in halves)}/{len(halves)}")
    means = [row["at_mean_plan"] for row in summary]
    print(f"certified at the rank planned for a mean below ln 2: {sum(m['certified'] for m in means)}/{len(means)}")
    ratios = [row["plan"] / row["smallest"] for row in summary if row["smallest"]]
    if ratios:
        print(f"planned / smallest certifying rank: {', '.join(f'{r:.2f}' for r in ratios)}")
    for label, law in laws.items():
        # a loss is never below 0: the plan reads a prediction below 0 as saturation, so does this
        errors = [abs(max(predicted_final_loss(law, t), 0.0) - t["final_loss"]) for t in trainings]
        limited = [e for e, t in zip(errors, trainings, strict=True) if t["final_loss"] >= CERTIFY_LOSS]
        median = statistics.median(errors)
        above = f"{statistics.mean(limited):.3f} over the {len(limited)}" if limited else "none of those"
        print(f"mean absolute error of the predicted final loss (below 0 read as 0), {label}: "
              f"{statistics.mean(errors):.3f} nats over {len(errors)} trainings (median {median:.3f}); "
              f"{above} that ended above ln 2")  # fmt: skip
    steps = [(row["steps"], row["at_plan"]["steps"]) for row in summary if row["steps"]]
    if steps:
        ratio = statistics.median(measured / predicted for predicted, measured in steps)
        print(f"measured / predicted steps at the planned rank: median {ratio:.2f}")
    assert all(math.isfinite(t["final_loss"]) for t in trainings)


if __name__ == "__main__":
    main()
