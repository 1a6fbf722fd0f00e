"""Continual memory: cycles of new files into one adapter, until past its capacity, three ways.

Cycle k brings a new file of PhoneBook records (names and 10-digit numbers, seeded, no name
twice). Cycle 1 is one ``memlaw.train`` of the first file, shared by the three ways; from cycle 2
on, each way trains the adapter it left at cycle k−1:

- ``naive``: SFT on the new file alone, from the previous weights (what users do);
- ``sft-replay``: SFT on everything so far, from the previous weights;
- ``memlaw``: ``memlaw.train(NEW, into=PREVIOUS)``: everything so far under the replay rule (held
  items cost nothing until one of their tokens slips below p 0.5), with ``memlaw.room``'s verdict first,
  at the adapter's rank whatever the verdict (what happens past capacity);
- ``memlaw-grow``: the same, but following the verdict: when ``room`` says the file does not fit,
  the cycle grows the adapter to the rank it names (``grow=``). Until the first such verdict it is
  the ``memlaw`` way (the same trainings, not repeated); without a law for the adapter, throughout.

Every way trains with train's budget (until certified or converged, at most 2,000 steps, the rate
cycle 1 trained at, the same precision). After each cycle every item so far is measured with the
adapter: certified (every token at p > 0.5 under teacher forcing) and greedy verbatim. ``one-shot``
trainings of the first k files at once on a fresh adapter, for each k, give what the same adapter
holds when it learns that content in one go: the cycles' held tokens are compared with them. The
room verdict of each cycle (the plan's for cycle 1), for the rank the cycle trained at, is right
when it said "fits" and the union certified, or "does not fit" and it did not.

Each training is appended to ``--out`` (JSONL) and skipped when the script runs again, so an
interrupted run resumes (a cycle's adapter folder is written before its row, and redone if its
row is missing). The table printed at the end is docs/continual.md's; ``--figure`` draws retention.
``--law`` judges with another law (one calibrated on content like the files') and ``--ways`` runs
only some ways: the verdicts come from the memlaw ways alone.

    python benchmarks/continual.py --out runs/continual/default.jsonl --autocast
    python benchmarks/continual.py --out runs/continual/two-layers.jsonl --adapter mlp-two-layers --autocast
    python benchmarks/continual.py --out runs/continual/pb-law.jsonl --law LAW --ways memlaw,memlaw-grow --autocast
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import replace
from pathlib import Path

import memlaw
from memlaw.constants import CERTIFY_LOSS, MLP_MODULES
from memlaw.data.encoding import EncodedData
from memlaw.data.phonebook import phonebook_items
from memlaw.measure.recall import measure_recall
from memlaw.memory import AdapterMemory
from memlaw.models.loading import load_model
from memlaw.probe.config import ProbeConfig
from memlaw.probe.data import prepare
from memlaw.probe.run import probe_together

#: Adapter settings on top of train's defaults.
ADAPTERS = {
    "default": {},
    "mlp-two-layers": {"layer": [26, 28], "target_modules": list(MLP_MODULES)},
}
WAYS = ("naive", "sft-replay", "memlaw", "memlaw-grow")


def cycle_files(folder: Path, cycles: int, records: int, seed: int) -> list[Path]:
    """``cycles`` JSONL files of ``records`` PhoneBook records each, no name in two files."""
    items, seen = [], set()
    for item in phonebook_items(cycles * records * 2, seed=seed):
        if item.key not in seen:
            seen.add(item.key)
            items.append(item)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(cycles):
        path = folder / f"cycle-{k + 1}.jsonl"
        chunk = items[k * records : (k + 1) * records]
        path.write_text("".join(json.dumps({"key": i.key, "value": i.value}) + "\n" for i in chunk))
        paths.append(path)
    return paths


def evaluate(loaded, data: EncodedData, config: ProbeConfig) -> list[tuple[bool, bool]]:
    """(certified, verbatim) of each item with the adapter attached to ``loaded.model``."""
    (after,) = measure_recall(
        loaded.model, data, pad_id=loaded.tokenizer.pad_token_id, batch_size=config.eval_batch_size,
        decode_batch_size=config.decode_batch_size,
    )  # fmt: skip
    assert after.greedy is not None
    return [
        (bool(losses.max() < CERTIFY_LOSS), bool(exact))
        for losses, exact in zip(after.item_losses(), after.greedy.item_exact, strict=True)
    ]


def encoded(loaded, config: ProbeConfig, files: list[Path]) -> list[EncodedData]:
    return [prepare(replace(config, data=str(path)), loaded)[1] for path in files]


def held_tokens(data: EncodedData, outcome: list[tuple[bool, bool]]) -> int:
    """Answer tokens of the certified items."""
    return sum(len(item.answer_ids) for item, (certified, _) in zip(data.items, outcome, strict=True) if certified)


def row_for(way: str, cycle: int, result, outcome: list[tuple[bool, bool]], sizes: list[int], extra: dict) -> dict:
    """A cycle's measures: earlier items still certified and verbatim, the new ones, the cost."""
    earlier = sum(sizes[:-1])
    old, new = outcome[:earlier], outcome[earlier:]
    return {
        "way": way, "cycle": cycle, "items_so_far": len(outcome), "earlier_items": earlier,
        "earlier_certified": sum(c for c, _ in old), "earlier_verbatim": sum(v for _, v in old),
        "new_items": len(new), "new_certified": sum(c for c, _ in new), "new_verbatim": sum(v for _, v in new),
        "held_certified": sum(c for c, _ in outcome), "union_certified": all(c for c, _ in outcome),
        "steps": result.steps, "seconds": result.seconds, **extra,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="JSONL of cycles (resumed if present)")
    parser.add_argument("--adapter", choices=sorted(ADAPTERS), default="default")
    parser.add_argument("--rank", type=int, default=1)
    # eight: in a bf16 run with the finishing phase, rank 1 of the default adapter still certified cycle 6
    parser.add_argument("--cycles", type=int, default=8, help="files, one per cycle (past the adapter's capacity)")
    parser.add_argument("--records", type=int, default=10, help="records per cycle file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--autocast", action="store_true", help="bf16 autocast of training passes")
    parser.add_argument("--figure", help="PNG of retention over cycles (from the rows in --out)")
    parser.add_argument("--law", help="law file for room's verdicts and cycle 1's plan (default: the packaged one)")
    parser.add_argument(
        "--ways", default=",".join((*WAYS, "one-shot")),
        help="comma-separated ways to run (the memlaw ways alone check another law's verdicts)",
    )  # fmt: skip
    args = parser.parse_args()
    ways = args.ways.split(",")
    unknown = sorted(set(ways) - {*WAYS, "one-shot"})
    if unknown:
        parser.error(f"unknown ways {unknown}: choose from {', '.join((*WAYS, 'one-shot'))}")
    if "memlaw-grow" in ways and "memlaw" not in ways:
        parser.error("memlaw-grow follows the memlaw way's trainings: run both")
    out = Path(args.out)
    root = out.with_suffix("")
    rows = [json.loads(line) for line in out.read_text().splitlines()] if out.is_file() else []
    done = {(row["way"], row["cycle"]) for row in rows}
    if rows and rows[0].get("law") != args.law:
        parser.error(f"{out} holds verdicts of law {rows[0].get('law')}, not {args.law}: give another --out")

    def record(row: dict) -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        rows.append(row)
        done.add((row["way"], row["cycle"]))
        print(json.dumps(row))

    files = cycle_files(root / "files", args.cycles, args.records, args.seed)
    loaded = load_model()
    settings = {**ADAPTERS[args.adapter], "rank": args.rank, "autocast": args.autocast}
    first = root / "cycle-1"
    if ("shared", 1) not in done:
        shutil.rmtree(first, ignore_errors=True)
        has_law = args.adapter == "default" or args.law
        plan = memlaw.plan(data=files[0], law=args.law, loaded=loaded) if has_law else None
        result = memlaw.train(files[0], out=first, loaded=loaded, **settings)
        outcome = evaluate(loaded, result.data, ProbeConfig(**result.config))
        result.adapter.remove()
        extra = {"predicted_fit": None if plan is None else plan.rank <= args.rank, "lr": result.config["lr"],
                 "law": args.law}  # fmt: skip
        record(row_for("shared", 1, result, outcome, [len(outcome)], extra))
    base = AdapterMemory.load(first).config  # the adapter's settings and the rate it trained at
    data = encoded(loaded, replace(base, lr_search=False), files)
    sizes = [len(d.items) for d in data]
    fits = {row["cycle"]: row["predicted_fit"] for row in rows if row["way"] == "memlaw"}
    for way in (w for w in WAYS if w in ways):
        previous, follows_memlaw = first, way == "memlaw-grow"
        for cycle in range(2, args.cycles + 1):
            folder = root / way / f"cycle-{cycle}"
            # the same training as the memlaw way's while room says it fits (or has no law to say)
            if follows_memlaw and fits.get(cycle) is not False:
                previous = root / "memlaw" / f"cycle-{cycle}"
                continue
            follows_memlaw = False
            if (way, cycle) in done:
                previous = folder
                continue
            shutil.rmtree(folder, ignore_errors=True)
            union = EncodedData(tuple(item for d in data[:cycle] for item in d.items))
            extra = {}
            if way.startswith("memlaw"):
                grow = None
                if way == "memlaw-grow":
                    verdict = memlaw.room(previous, data=files[cycle - 1], law=args.law, loaded=loaded)
                    grow = None if verdict.fits or verdict.union_rank is None else verdict.union_rank
                result = memlaw.train(files[cycle - 1], into=previous, out=folder, loaded=loaded, grow=grow,
                                      law=args.law, track_record=root / "track-record.db")  # fmt: skip
                room = result.cycle["room"]
                extra = {"predicted_fit": room.get("fits"), "union_rank": room.get("union_rank"),
                         "capacity_tokens": room.get("capacity_tokens"), "slipped": result.cycle["slipped"],
                         "restored": result.cycle["restored"], "rank": result.cycle["rank"],
                         "grown_from": result.cycle["grown_from"]}  # fmt: skip
                if way == "memlaw":
                    fits[cycle] = room.get("fits")
            else:
                trained = union if way == "sft-replay" else data[cycle - 1]
                (result,) = probe_together(
                    [replace(base, lr_search=False)], loaded, trained, progress=False, start_from=previous
                )
                result.adapter.save_pretrained(folder)
            outcome = evaluate(loaded, union, base)
            result.adapter.remove()
            extra["held_tokens"] = held_tokens(union, outcome)
            record(row_for(way, cycle, result, outcome, sizes[:cycle], extra))
            previous = folder
    for cycle in range(2, args.cycles + 1) if "one-shot" in ways else ():
        if ("one-shot", cycle) in done:
            continue
        union = EncodedData(tuple(item for d in data[:cycle] for item in d.items))
        (result,) = probe_together([replace(base, lr_search=False)], loaded, union, progress=False)
        outcome = evaluate(loaded, union, base)
        result.adapter.remove()
        extra = {"held_tokens": held_tokens(union, outcome)}
        record(row_for("one-shot", cycle, result, outcome, [0, len(outcome)], extra))
    print_table(rows, sizes, data)
    if args.figure:
        draw(rows, args.figure, args.records)


def by_way(rows: list[dict], way: str) -> list[dict]:
    """The way's rows from cycle 1 (the shared one); memlaw-grow takes memlaw's until it parts from it."""
    own = {r["cycle"]: r for r in rows if r["way"] == way}
    if way == "memlaw-grow":
        parted = min(own, default=None)
        own |= {r["cycle"]: r for r in rows if r["way"] == "memlaw" and (parted is None or r["cycle"] < parted)}
    own |= {r["cycle"]: r for r in rows if r["way"] == "shared"}
    return [own[k] for k in sorted(own)]


def print_table(rows: list[dict], sizes: list[int], data: list[EncodedData]) -> None:
    tokens = [d.length for d in data]
    print(
        "| cycle | items so far (tokens) | way | rank | earlier certified | earlier verbatim | new certified "
        "| held tokens | steps | s |"
    )
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in sorted(rows, key=lambda r: (r["cycle"], r["way"] != "shared", r["way"])):
        k = row["cycle"]
        so_far = f"{sum(sizes[:k])} ({sum(tokens[:k])})"
        earlier = row["earlier_items"]
        held = row.get("held_tokens", sum(tokens[:k]) if row["union_certified"] else "")
        print(
            f"| {k} | {so_far} | {row['way']} | {row.get('rank', 1)} | {row['earlier_certified']}/{earlier} "
            f"| {row['earlier_verbatim']}/{earlier} | {row['new_certified']}/{row['new_items']} | {held} "
            f"| {row['steps']:,} | {row['seconds']:.0f} |"
        )
    judged = ("shared", "memlaw", "memlaw-grow")
    verdicts = [r for r in rows if r["way"] in judged and r.get("predicted_fit") is not None]
    right = sum(fits_as_trained(r) == r["union_certified"] for r in verdicts)
    print(f"room verdicts right (for the rank each cycle trained at): {right}/{len(verdicts)}")
    grown = [r for r in verdicts if r.get("grown_from")]
    print(f"grown cycles certified at the rank room named: {sum(r['union_certified'] for r in grown)}/{len(grown)}")


def fits_as_trained(row: dict) -> bool:
    """The verdict for the rank the cycle trained at, as the track record keeps it: a cycle that grew
    checks that the rank room named holds everything."""
    if not row.get("grown_from"):
        return bool(row["predicted_fit"])
    return row["union_rank"] is not None and row["union_rank"] <= row["rank"]


def draw(rows: list[dict], path: str, records: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for way in (*WAYS, "one-shot"):
        points = by_way(rows, way)
        style = {"color": "grey", "ls": "--"} if way == "one-shot" else {"marker": "o"}
        label = "one-shot (first k files at once)" if way == "one-shot" else way
        ax.plot([r["cycle"] for r in points], [r["held_certified"] for r in points], label=label, **style)
    total = by_way(rows, "memlaw")
    ax.plot([r["cycle"] for r in total], [r["items_so_far"] for r in total], "k:", label="items so far")
    ax.set_xlabel(f"cycle ({records} new records each)")
    ax.set_ylabel("items certified (p > 0.5 on every token)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
