"""``memlaw sweep`` runs a grid of probes into a results store; ``memlaw results`` reads it."""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

from memlaw.cli.main import quiet_libraries
from memlaw.errors import MemlawInputError
from memlaw.io import write_text_atomic
from memlaw.sweep import ResultsStore, load_sweep, run_sweep
from memlaw.sweep.store import COLUMNS, SETTING_COLUMNS

DEFAULT_STORE = "memlaw-results.db"
#: Columns `memlaw results` prints (the CSV export has them all).
SHOWN = ("status", "rank", "length", "ratio", "method", "seed", "delta_loss", "final_loss", "certified", "exact_match")


def register(commands: argparse._SubParsersAction) -> None:
    sweep = commands.add_parser("sweep", help="run a grid of probes into a results store", description=__doc__)
    sweep.add_argument("config", help="YAML sweep config: 'grid' axes and 'fixed' probe settings")
    sweep.add_argument("--store", default=DEFAULT_STORE, help=f"SQLite results store (default: {DEFAULT_STORE})")
    sweep.add_argument("--backend", default="local", choices=["local"], help="where cells run")
    sweep.add_argument("--retry-failed", action="store_true", help="run again the cells stored as failed")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    sweep.set_defaults(run=run_sweep_command)

    results = commands.add_parser("results", help="list or export stored probe results")
    results.add_argument("--store", default=DEFAULT_STORE, help=f"SQLite results store (default: {DEFAULT_STORE})")
    results.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE", help="filter (repeatable)")
    results.add_argument("--csv", help="write every column of the selected cells to this CSV file")
    results.set_defaults(run=run_results_command)


def run_sweep_command(args: argparse.Namespace) -> int:
    sweep = load_sweep(args.config)
    quiet_libraries()
    store = ResultsStore(args.store)
    report = run_sweep(sweep, store, retry_failed=args.retry_failed, progress=not args.quiet)
    print(
        f"{report.total} cells: {report.skipped} already stored, {report.done} done, {report.failed} failed "
        f"-> {args.store}"
    )
    return 0


def run_results_command(args: argparse.Namespace) -> int:
    if not Path(args.store).is_file():
        raise MemlawInputError(f"no results store at {args.store}: run memlaw sweep first or pass --store")
    where = {}
    for condition in args.where:
        column, sep, value = condition.partition("=")
        if not sep:
            raise MemlawInputError(f"--where takes COLUMN=VALUE, got '{condition}'")
        where[column.strip()] = value.strip()
    rows = ResultsStore(args.store).rows(where)
    if args.csv:
        columns = ["cell_key", "status", "error", *SETTING_COLUMNS, *COLUMNS, "config"]
        write_text_atomic(args.csv, _csv_text(rows, columns))
        print(f"{len(rows)} cells -> {args.csv}")
        return 0
    writer = csv.writer(sys.stdout, delimiter="\t", lineterminator="\n")
    writer.writerow(SHOWN)
    for row in rows:
        writer.writerow([_short(row[c]) for c in SHOWN])
    return 0


def _csv_text(rows: list[dict], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _short(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)
