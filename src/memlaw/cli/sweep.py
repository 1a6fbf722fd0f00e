"""``memlaw sweep`` runs a grid of probes into a results store; ``memlaw results`` reads it."""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

import yaml

from memlaw.cli.common import quiet_libraries
from memlaw.cli.signals import say_stopped, stopped
from memlaw.errors import MemlawInputError
from memlaw.io import check_outputs, output_mode, write_text_atomic
from memlaw.sweep.grid import MAX_CELLS, load_sweep
from memlaw.sweep.store import ADDED_COLUMNS, COLUMNS, SETTING_COLUMNS, ResultsStore

DEFAULT_STORE = "memlaw-results.db"
#: Columns `memlaw results` prints (the CSV export has them all).
SHOWN = ("status", "rank", "length", "ratio", "method", "seed", "delta_loss", "final_loss", "certified", "exact_match")


def register(commands: argparse._SubParsersAction) -> None:
    sweep = commands.add_parser("sweep", help="run a grid of probes into a results store", description=__doc__)
    sweep.add_argument("config", help="YAML sweep config: 'grid' axes and 'fixed' probe settings")
    sweep.add_argument("--store", default=DEFAULT_STORE, help=f"SQLite results store (default: {DEFAULT_STORE})")
    sweep.add_argument("--backend", default="local", choices=["local", "ray"], help="where cells run")
    sweep.add_argument("--workers", type=int, default=1, help="local: processes running cells (each loads the model)")
    sweep.add_argument("--address", help="ray: address of an existing cluster (default: start a local one)")
    sweep.add_argument("--retry-failed", action="store_true", help="run again the cells stored as failed")
    sweep.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SETTING=VALUE",
        help="fix a setting on top of the config's 'fixed' section (repeatable; YAML values)",
    )  # fmt: skip
    sweep.add_argument(
        "--max-cells", type=int, default=MAX_CELLS, help=f"refuse grids larger than this (default {MAX_CELLS:,})"
    )
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    sweep.set_defaults(run=run_sweep_command)

    results = commands.add_parser("results", help="list or export stored probe results")
    results.add_argument("--store", default=DEFAULT_STORE, help=f"SQLite results store (default: {DEFAULT_STORE})")
    results.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE", help="filter (repeatable)")
    results.add_argument("--csv", help="write every column of the selected cells to this CSV file")
    results.add_argument("--parquet", help="write every column of the selected cells to this Parquet file")
    results.set_defaults(run=run_results_command)


def parse_overrides(pairs: list[str]) -> dict[str, object]:
    overrides = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name:
            raise MemlawInputError(f"--set needs SETTING=VALUE, got '{pair}'")
        try:
            overrides[name.replace("-", "_")] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise MemlawInputError(f"--set {name}: '{value}' is not a YAML value ({err})") from err
    return overrides


def run_sweep_command(args: argparse.Namespace) -> int:
    quiet_libraries(quiet=args.quiet)  # first: tqdm reads its settings when first imported
    from memlaw.sweep.runner import run_sweep

    if args.workers < 1:  # before the store exists: a refused sweep leaves nothing behind
        raise MemlawInputError(f"--workers must be at least 1, got {args.workers}")
    sweep = load_sweep(args.config, parse_overrides(args.overrides), max_cells=args.max_cells)
    with ResultsStore(args.store) as store:
        try:
            report = run_sweep(
                sweep,
                store,
                backend=args.backend,
                workers=args.workers,
                address=args.address,
                retry_failed=args.retry_failed,
                progress=not args.quiet,
            )
        except KeyboardInterrupt as stop:
            return interrupted("sweep", store, stop)
    elsewhere = f", {report.elsewhere} by another driver" if report.elsewhere else ""
    print(
        f"{report.total} cells: {report.skipped} already stored, {report.done} done, {report.failed} failed"
        f"{elsewhere} -> {args.store}"
    )
    return 0


def interrupted(command: str, store: ResultsStore, stop: KeyboardInterrupt) -> int:
    """Ctrl-C or SIGTERM during a sweep: say what is kept and how to resume, and exit as the
    signal does (128 + its number)."""
    # a cell is stored in one transaction once it is finished, so the one in flight is simply not there
    stored = len(store.rows({"status": "done"}))
    what, status = stopped(stop)
    say_stopped(
        f"memlaw {command}: {what}; {store.path} keeps the {stored} finished cells (the cell in flight was not "
        "stored): run the same command again to resume"
    )
    return status


def run_results_command(args: argparse.Namespace) -> int:
    check_outputs(files=[("--csv", args.csv), ("--parquet", args.parquet)], inputs=[("--store", args.store)])
    if not Path(args.store).is_file():
        raise MemlawInputError(f"no results store at {args.store}: run memlaw sweep first or pass --store")
    where = {}
    for condition in args.where:
        column, sep, value = condition.partition("=")
        if not sep:
            raise MemlawInputError(f"--where takes COLUMN=VALUE, got '{condition}'")
        where[column.strip()] = value.strip()
    with ResultsStore(args.store) as store:
        rows = store.rows(where)
    columns = ["cell_key", "status", "error", *SETTING_COLUMNS, *COLUMNS, *ADDED_COLUMNS, "config"]
    if args.csv:
        write_text_atomic(args.csv, _csv_text(rows, columns))
        print(f"{len(rows)} cells -> {args.csv}")
    if args.parquet:
        _write_parquet(args.parquet, rows, columns)
        print(f"{len(rows)} cells -> {args.parquet}")
    if args.csv or args.parquet:
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


def _write_parquet(path: str, rows: list[dict], columns: list[str]) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as err:
        raise MemlawInputError("Parquet export needs pyarrow: pip install 'memlaw[parquet]'") from err
    # settings columns mix numbers and text (layer: 20 or [1, 2]); Parquet columns need one type
    table = pa.Table.from_pylist([{c: _cell_text(r[c], c) for c in columns} for r in rows])
    staging = Path(path).with_name(f".{Path(path).name}.partial")
    pq.write_table(table, staging)
    staging.chmod(output_mode(Path(path)))
    staging.replace(path)


def _cell_text(value: object, column: str) -> object:
    return value if column in COLUMNS or value is None else str(value)


def _short(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)
