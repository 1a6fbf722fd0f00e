"""Does `memlaw train` certify every file on every adapter users train, and what does the usual
recipe leave behind?

Every set (the plan benchmark's, PhoneBook at 240, 480 and 960 tokens among them, a file of 12
near-identical order records and a chat file) is trained on four adapters:

- ``default``: LoRA on the MLP of the layer two below the top (memlaw train's default), at rank
  8 or the rank the packaged PEFT law plans for the file (90 % certification), whichever is
  larger (the plan's rank is recorded: `benchmarks/plan_accuracy.py` checks plans);
- ``mlp-all``: LoRA on the MLP of every layer, rank 1;
- ``qv-all``: PEFT's default targets for Llama-style models, q_proj and v_proj of every layer, rank 1;
- ``all-linear``: every linear layer but the head, rank 1.

and by two recipes:

- ``memlaw``: ``memlaw train``'s defaults, no budget flag (learning-rate search, until converged
  under the stubborn-token plateau rule, end tokens supervised);
- ``before``: memlaw train as it was before the learning-rate search and end tokens (lr 0.03
  for every adapter, answers only), the baseline for steps to certification;
- ``memft-ot``: ``memlaw train --method memft-ot``, to see whether MemFT certifies sooner;
- ``practitioners``: what people run today, PEFT LoRA r 16, alpha 32 on the same modules, lr 2e-4
  decaying linearly, 3 epochs, batch 8, SFT on the answers and their end tokens.

Every training is appended to ``--out`` (JSONL) and skipped when the script runs again, so an
interrupted run resumes. The table printed at the end is docs/certify.md's.

    python benchmarks/certify.py --out runs/certify/trainings.jsonl
    python benchmarks/certify.py --out runs/certify/trainings.jsonl --sets orders,chat --adapters default
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from dataclasses import replace
from pathlib import Path

from plan_accuracy import data_sets

from memlaw.api.train import TRAIN_DEFAULTS
from memlaw.constants import DEFAULT_MODEL, MLP_MODULES
from memlaw.law.library import find_law
from memlaw.law.plan import plan_rank
from memlaw.measure.greedy import greedy_reply
from memlaw.probe.config import ProbeConfig
from memlaw.probe.content import content_losses
from memlaw.probe.data import build_data, prepare
from memlaw.probe.run import run_probe

#: Adapter settings (on top of train's defaults) and rank; None: ``DEFAULT_RANK`` or the plan's.
ADAPTERS = {
    "default": ({}, None),
    "mlp-all": ({"layer": "all", "target_modules": list(MLP_MODULES)}, 1),
    "qv-all": ({"layer": "all", "target_modules": ["q_proj", "v_proj"]}, 1),
    "all-linear": ({"layer": "all", "target_modules": ["all-linear"]}, 1),
}
#: The default adapter's rank, unless the law plans more.
DEFAULT_RANK = 8
#: memlaw train before the learning-rate search and the end tokens.
BEFORE = {"lr_search": False, "end_token": False}
#: The same with MemFT-OT instead of SFT.
MEMFT = {"method": "memft-ot"}
#: Recipes compared with memlaw's on a few adapters (``--baselines-on``).
BASELINES = {"before": BEFORE, "memft-ot": MEMFT}
#: The recipe practitioners run: PEFT LoRA r 16, alpha 32, lr 2e-4, 3 epochs (linear decay).
PRACTITIONERS = {
    "rank": 16, "lora_alpha": 32.0, "lr": 2e-4, "epochs": 3, "until": "budget", "lr_search": False,
    "method": "sft", "batch_size": 8,
}  # fmt: skip


def orders_file(folder: Path, count: int = 12, seed: int = 0) -> Path:
    """Near-identical keys ("Order 1000 ships to:", "Order 1001 ...") with codes like 48-2931-KX."""
    rng = random.Random(seed)
    lines = []
    for number in range(1000, 1000 + count):
        code = f"{rng.randrange(10, 100)}-{rng.randrange(1000, 10000)}-{rng.choice('ABCDEFGHJK')}{rng.choice('XYZW')}"
        lines.append(json.dumps({"key": f"Order {number} ships to:", "value": code}))
    path = folder / "orders.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="JSONL of trainings (resumed when it exists)")
    parser.add_argument("--sets", help="comma list of sets (default: all)")
    parser.add_argument("--adapters", default=",".join(ADAPTERS), help="comma list of adapters")
    parser.add_argument("--recipes", default="memlaw,before,memft-ot,practitioners", help="comma list of recipes")
    parser.add_argument(
        "--baselines-on", default="default", help="adapters the before and memft-ot recipes train (default: default)"
    )
    parser.add_argument("--autocast", action="store_true", help="bf16 autocast for training (measurements float32)")
    args = parser.parse_args()
    args.baselines_on = args.baselines_on.split(",")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    folder = out.parent / f"{out.stem}-data"
    folder.mkdir(exist_ok=True)
    sets = {**data_sets(folder), "orders": {"data": str(orders_file(folder))}}
    chosen = args.sets.split(",") if args.sets else list(sets)
    law, _ = find_law(DEFAULT_MODEL, "peft")
    done = {}
    if out.exists():
        for row in map(json.loads, out.read_text(encoding="utf-8").splitlines()):
            done[(row["set"], row["adapter"], row["recipe"])] = row
    loaded = None
    for name in chosen:
        base = ProbeConfig(**{**TRAIN_DEFAULTS, **sets[name], "autocast": args.autocast})
        if loaded is None:
            loaded, _ = prepare(base, None)
        planned = None
        for adapter in args.adapters.split(","):
            settings, rank = ADAPTERS[adapter]
            for recipe in args.recipes.split(","):
                if (name, adapter, recipe) in done or (recipe in BASELINES and adapter not in args.baselines_on):
                    continue
                if rank is None and planned is None:  # the plan for the default adapter, as memlaw plan makes it
                    content = content_losses(replace(base, end_token=False), loaded)
                    plan = plan_rank(law, content.length, initial_loss=content.initial_loss, confidence=0.9)
                    planned = int(plan.rank)
                config = replace(base, **settings, rank=rank or max(planned, DEFAULT_RANK))
                if recipe != "memlaw":
                    config = replace(config, **{**BASELINES, "practitioners": PRACTITIONERS}[recipe])
                result = run_probe(config, loaded)
                asked = asked_exactly(config, loaded) if recipe == "memlaw" else None
                result.adapter.remove()
                row = {
                    "set": name, "adapter": adapter, "recipe": recipe, "rank": config.rank,
                    "planned_rank": planned if rank is None else None,
                    "trainable_params": result.trainable_params, "items": result.num_items, "length": result.length,
                    "initial_loss": result.initial_loss, "final_loss": result.final_loss,
                    "certified": result.certified, "certified_step": result.certified_step,
                    "exact_match": result.exact_match,
                    "stubborn": sum(len(item["stubborn_positions"]) for item in result.items),
                    "frac_above_half": result.frac_above_half, "steps": result.steps, "seconds": result.seconds,
                    "stop_reason": result.stop_reason, "plateau_measure": result.plateau_measure,
                    "lr": config.lr if result.lr_choice is None else result.lr_choice["lr"],
                    "lr_choice": result.lr_choice, "autocast": args.autocast, "asked_exact": asked,
                }  # fmt: skip
                with out.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(row) + "\n")
                done[(name, adapter, recipe)] = row
                print(describe(row), flush=True)
    print_table([row for key, row in done.items() if key[0] in chosen])


def asked_exactly(config: ProbeConfig, loaded) -> float:
    """Share of items for which what ``memlaw ask`` prints (``greedy_reply``) is exactly the
    memorised answer: every answer token, and nothing after it."""
    data = build_data(config, loaded.tokenizer, int(loaded.model.config.vocab_size))
    exact = 0
    for item in data.items:
        reply = greedy_reply(
            loaded.model, loaded.tokenizer, list(item.prompt_ids), config.prompt_format, len(item.answer_ids) + 16
        )
        exact += reply == loaded.tokenizer.decode(item.answer_ids, skip_special_tokens=True)
    return exact / len(data.items)


def describe(row: dict) -> str:
    certified = f"certified at step {row['certified_step']}" if row["certified"] else "not certified"
    return (
        f"{row['set']} / {row['adapter']} rank {row['rank']} / {row['recipe']}: {certified}, "
        f"exact {row['exact_match']:.0%}, "
        f"{row['stubborn']} tokens at p <= 0.5, {row['steps']} steps, {row['seconds']:.0f} s, lr {row['lr']:.3g}"
        + ("" if row.get("asked_exact") is None else f", memlaw ask exact {row['asked_exact']:.0%}")
    )


def print_table(rows: list[dict]) -> None:
    """One line per set and adapter: memlaw's result, then the practitioners' recipe."""
    by_key = {(r["set"], r["adapter"], r["recipe"]): r for r in rows}
    print(
        "\n| set | adapter | rank | tokens | memlaw: certified | exact | ask exact | steps to certify | s | lr | "
        "before: steps to certify | memft-ot: steps to certify | recipe: certified | exact | tokens at p ≤ 0.5 |"
    )
    print("|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|")
    pairs = sorted({(r["set"], r["adapter"]) for r in rows})
    for name, adapter in pairs:
        ours, theirs = by_key.get((name, adapter, "memlaw")), by_key.get((name, adapter, "practitioners"))
        baselines = [by_key.get((name, adapter, recipe)) for recipe in BASELINES]
        first = ours or theirs or next(b for b in baselines if b)
        cells = [name, adapter, str(first["rank"] if ours else "—"), str(first["length"])]
        if ours:
            cells += [
                "yes" if ours["certified"] else f"no ({ours['stubborn']} left)", f"{ours['exact_match']:.0%}",
                "—" if ours.get("asked_exact") is None else f"{ours['asked_exact']:.0%}",
                str(ours["certified_step"] if ours["certified"] else "—"), f"{ours['seconds']:.0f}",
                f"{ours['lr']:.3g}",
            ]  # fmt: skip
        else:
            cells += ["—"] * 6
        for baseline in baselines:
            if baseline is None:
                cells.append("—")
            elif baseline["certified"]:
                cells.append(str(baseline["certified_step"]))
            else:
                cells.append(f"not certified ({baseline['stubborn']} left)")
        if theirs:
            cells += ["yes" if theirs["certified"] else "no", f"{theirs['exact_match']:.0%}", str(theirs["stubborn"])]
        else:
            cells += ["—"] * 3
        print("| " + " | ".join(cells) + " |")
    ours = [r for r in rows if r["recipe"] == "memlaw"]
    if ours:
        print(f"\nmemlaw certified {sum(r['certified'] for r in ours)}/{len(ours)} trainings")
        for adapter in ADAPTERS:
            steps = [r["certified_step"] for r in ours if r["adapter"] == adapter and r["certified"]]
            if steps:
                print(
                    f"  {adapter}: median steps to certification {statistics.median(steps):g} ({len(steps)} certified)"
                )
    for recipe in BASELINES:
        pairs = [
            (r["certified_step"], by_key[(r["set"], r["adapter"], recipe)]["certified_step"])
            for r in ours
            if r["certified"] and by_key.get((r["set"], r["adapter"], recipe), {}).get("certified")
        ]
        if pairs:
            now, then = zip(*pairs, strict=True)
            print(f"median steps to certification where memlaw and {recipe} both certified: "
                  f"{statistics.median(now):g} and {statistics.median(then):g} ({len(pairs)} trainings)")  # fmt: skip
    theirs = [r for r in rows if r["recipe"] == "practitioners"]
    if theirs:
        left = sum(r["stubborn"] > 0 for r in theirs)
        print(f"practitioners' recipe certified {sum(r['certified'] for r in theirs)}/{len(theirs)}; "
              f"{left} left tokens at p <= 0.5")  # fmt: skip


if __name__ == "__main__":
    main()
