"""Kill a sweep at random moments, resume it each time, and check that nothing was lost or doubled.

A small grid on a tiny random model runs once uninterrupted (the reference). Then the same grid
runs into a second store, and the driver is killed with SIGKILL at ``--kills`` random moments,
each kill followed by a resume; a last resume finishes it. At the end: every cell is stored
exactly once, the measurements equal the reference's (same seeds), and the store passes
``PRAGMA integrity_check``.

    python benchmarks/chaos_sweep.py --kills 20 --seed 0
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from memlaw.models import build_tiny_model, load_tokenizer

#: Measurements compared with the reference run, cell by cell.
MEASURED = ("initial_loss", "final_loss", "delta_loss", "certified", "exact_match", "steps", "token_probs")


def sweep(config: Path, store: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "memlaw.cli.main", "sweep", str(config), "--store", str(store), "--quiet"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def cells(store: Path) -> dict[str, dict]:
    with sqlite3.connect(store) as db:
        db.row_factory = sqlite3.Row
        return {row["cell_key"]: dict(row) for row in db.execute("SELECT * FROM cells")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs, each followed by a resume")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--window", type=float, default=6.0, help="kills fall within this many seconds of a start")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    folder = Path(tempfile.mkdtemp(prefix="memlaw-chaos-"))
    model = folder / "tiny-model"
    tokenizer = load_tokenizer()
    build_tiny_model(tokenizer).model.save_pretrained(model)
    tokenizer.save_pretrained(model)
    # 24 cells: 12 data sets (never stacked together) x 2 ranks (stacked in one pass)
    grid = {"data_seed": list(range(1, 13)), "rank": [1, 2]}
    config = folder / "chaos.yaml"
    fixed = {"model": str(model), "data": "longcontext", "length": 48, "epochs": 60}
    config.write_text(yaml.safe_dump({"grid": grid, "fixed": fixed}))

    started = time.monotonic()
    reference_store = folder / "reference.db"
    sweep(config, reference_store).wait()
    uninterrupted = time.monotonic() - started
    reference = cells(reference_store)
    print(f"reference: {len(reference)} cells uninterrupted in {uninterrupted:.1f} s")

    store, landed = folder / "chaos.db", 0
    for _ in range(args.kills):
        process = sweep(config, store)
        time.sleep(rng.uniform(0.5, args.window))  # from start-up through the first cells
        if process.poll() is None:  # still running: the kill lands mid-sweep
            os.killpg(process.pid, signal.SIGKILL)
            landed += 1
        process.wait()
    resumes = 0
    while len(cells(store)) < len(reference) and resumes < 5:
        sweep(config, store).wait()
        resumes += 1
    stored = cells(store)

    with sqlite3.connect(store) as db:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        rows = db.execute("SELECT COUNT(*), COUNT(DISTINCT cell_key) FROM cells").fetchone()
    differing = [
        (key, name)
        for key, row in reference.items()
        for name in MEASURED
        if key not in stored or stored[key][name] != row[name]
    ]
    print(f"kills: {args.kills} ({landed} landed while the sweep ran), then {resumes} resume(s) to finish")
    print(f"cells stored: {rows[0]} rows, {rows[1]} distinct, of {len(reference)}; all done: "
          f"{all(r['status'] == 'done' for r in stored.values())}")  # fmt: skip
    print(f"measurements identical to the uninterrupted run: {not differing} ({len(differing)} differing values)")
    print(f"PRAGMA integrity_check: {integrity}")
    print(json.dumps({"kills": args.kills, "landed": landed, "rows": rows[0], "distinct": rows[1],
                      "cells": len(reference), "differing": len(differing), "integrity": integrity}))  # fmt: skip
    ok = rows[0] == rows[1] == len(reference) and not differing and integrity == "ok"
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
