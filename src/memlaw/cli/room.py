"""``memlaw room``: what a saved adapter holds, the room the law leaves it, and whether a new file fits.

It reads the adapter's item store (recall.json): items, answer tokens, and the bits they cost the
base model to predict (their initial loss). Capacity is the most answer tokens the law says the
adapter's rank certifies at that initial loss, with the probability plans aim for. With --data, the
new file's items are measured under the base model and the verdict says whether the law plans the
adapter's rank, or less, for everything held plus them; when it does not, it names the rank to grow
to (memlaw train NEW --into DIR --grow R) and the rank of a second adapter for the new file alone.
"""

from __future__ import annotations

import argparse
import json

from memlaw.cli.common import quiet_libraries


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("room", help="what an adapter holds and whether a new file fits", description=__doc__)
    parser.add_argument("adapter", metavar="DIR", help="folder written by memlaw train --out")
    parser.add_argument("--data", help="a new file (JSONL, CSV, Parquet or text): does it fit?")
    parser.add_argument("--fields", help="KEY,VALUE: the new file's question and answer columns")
    parser.add_argument("--law", help="law file to judge with (default: the adapter's calibrated law)")
    parser.add_argument(
        "--track-record", help="SQLite file of checked verdicts (default: track-record.db in $MEMLAW_HOME)"
    )
    parser.add_argument("--json", action="store_true", help="print the verdict as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    quiet_libraries(quiet=True)
    from memlaw.api.room import room

    fields = None if args.fields is None else [name.strip() for name in args.fields.split(",")]
    verdict = room(args.adapter, data=args.data, law=args.law, fields=fields, track_record=args.track_record)
    print(json.dumps(verdict.to_dict(), indent=2) if args.json else "\n".join(verdict.describe()))
    return 0
