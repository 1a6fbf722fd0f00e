"""The results store: one SQLite row per finished probe cell, written atomically.

WAL journaling and one transaction per cell mean a crash (even SIGKILL) leaves either the
whole row or nothing; the cell key is the primary key, so no cell is ever stored twice. Drivers
sharing a store claim cells with leases (``leases.py``); storing a cell ends its lease in the
same transaction.
Per-token probabilities are kept as float16 bytes (2 bytes a token), the rest as columns
or JSON.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from memlaw._version import __version__
from memlaw.config import settings_where
from memlaw.errors import MemlawInputError
from memlaw.probe.config import ProbeConfig
from memlaw.sweep.leases import LEASES_TABLE

if TYPE_CHECKING:
    from memlaw.probe.result import ProbeResult

#: Bumped when the table layout changes incompatibly; a store of another version is refused, not
#: migrated silently. Columns added since (new settings, ``ADDED_COLUMNS``) are added to older stores.
STORE_SCHEMA = 1

#: Measurements stored as columns (filterable, exported to CSV).
COLUMNS = (
    "length", "num_items", "trainable_params", "initial_loss", "final_loss", "delta_loss",
    "initial_frac_above_half", "frac_above_half", "initial_argmax_accuracy", "argmax_accuracy",
    "certified", "certified_step", "exact_match", "token_accuracy", "steps", "seconds",
)  # fmt: skip

#: Columns every store of this schema has had from the start (settings and ``ADDED_COLUMNS``
#: added since are added to older stores).
BASE_COLUMNS = (
    "cell_key", "status", "error", "config", "memlaw_version", "finished_at", *COLUMNS,
    "placement_json", "first_error", "loss_curve", "items", "token_probs",
)  # fmt: skip

#: Probe settings copied into columns too, so that results can be filtered by them.
SETTING_COLUMNS = settings_where(ProbeConfig, column=True)
#: Columns added after the first store schema (NULL in older rows): how a cell ran, and how its
#: training ended (``stop_reason``, ``budget_limited``, ``loss_slope``, ``plateau_measure``,
#: ``excess_slope``), and the rate it trained at (``trained_lr``: the searched one under
#: ``lr_search``, where the ``lr`` column keeps the rate the search started from).
ADDED_COLUMNS = {
    "worker": "TEXT", "stacked_copies": "INTEGER", "stop_reason": "TEXT", "budget_limited": "INTEGER",
    "loss_slope": "REAL", "plateau_measure": "TEXT", "excess_slope": "REAL", "trained_lr": "REAL",
}  # fmt: skip


#: Settings since retired, with the value every cell key still carries for them, so that the
#: cells stored before keep their keys (``stop_when_certified`` became ``until``).
RETIRED_KEYS = {"stop_when_certified": False}


def cell_key(config: ProbeConfig) -> str:
    """Stable identity of a cell: a hash of every setting that affects its measurements.

    Settings added after stores existed are left out while at their default, so the cells
    stored before them keep their keys."""
    settings: dict[str, Any] = dict(RETIRED_KEYS)
    for f in fields(config):
        value = getattr(config, f.name)
        if f.metadata["key"] and (f.metadata["keyed_when_default"] or value != f.default):
            settings[f.name] = value
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]


class ResultsStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise MemlawInputError(f"cannot create a store at {self.path}: {err.strerror or err}") from err
        try:
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.DatabaseError as err:
            raise MemlawInputError(f"{self.path} is not a memlaw results store ({err})") from err
        try:
            self._refuse_foreign()
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self._create_or_check()
        except (sqlite3.DatabaseError, MemlawInputError) as err:
            self.db.close()  # a refused store is left as it was, with no journal beside it
            if isinstance(err, MemlawInputError):
                raise
            raise MemlawInputError(f"{self.path} is not a memlaw results store ({err})") from err

    def _refuse_foreign(self) -> None:
        """Another program's database is refused before anything (even the journal mode) changes."""
        tables = {name for (name,) in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and "meta" not in tables:  # every memlaw store, of any schema, has its meta table
            raise MemlawInputError(
                f"{self.path} is a SQLite database of another program (tables: {', '.join(sorted(tables))}), "
                "not a memlaw results store: it was left untouched; pass another store="
            )

    def _create_or_check(self) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            found = self.db.execute("SELECT value FROM meta WHERE key = 'store_schema'").fetchone()
            if found is None:
                self.db.execute("INSERT INTO meta VALUES ('store_schema', ?)", (str(STORE_SCHEMA),))
                # NUMERIC affinity: numbers compare as numbers, also against text filters like rank = '8'
                setting_columns = ", ".join(f"{c} NUMERIC" for c in SETTING_COLUMNS)
                measure_columns = ", ".join(f"{c} REAL" for c in COLUMNS)
                added_columns = ", ".join(f"{c} {kind}" for c, kind in ADDED_COLUMNS.items())
                self.db.execute(
                    f"""CREATE TABLE cells (
                        cell_key TEXT PRIMARY KEY, status TEXT NOT NULL, error TEXT,
                        config TEXT NOT NULL, memlaw_version TEXT NOT NULL, finished_at REAL NOT NULL,
                        {setting_columns}, {measure_columns}, {added_columns},
                        placement_json TEXT, first_error TEXT, loss_curve TEXT, items TEXT, token_probs BLOB)"""
                )
            elif found[0] != str(STORE_SCHEMA):
                raise MemlawInputError(
                    f"{self.path} was written by a memlaw with store schema {found[0]}; this one reads "
                    f"schema {STORE_SCHEMA}: use a new store="
                )
            present = {row[1] for row in self.db.execute("PRAGMA table_info(cells)")}
            missing = [column for column in BASE_COLUMNS if column not in present]
            if missing:  # refused before anything changes: the transaction is rolled back
                raise MemlawInputError(
                    f"{self.path} is a damaged memlaw results store: its cells table lacks "
                    f"{', '.join(missing)}; run the sweep again into a new store="
                )
            self.db.execute(LEASES_TABLE)
            for column in (*SETTING_COLUMNS, *ADDED_COLUMNS):
                if column in present:
                    continue
                # a setting or run column added since the store was made: settings come from each
                # row's stored config (the declared default where the row predates the setting)
                kind = "NUMERIC" if column in SETTING_COLUMNS else ADDED_COLUMNS[column]
                self.db.execute(f"ALTER TABLE cells ADD COLUMN {column} {kind}")
                if column in SETTING_COLUMNS:
                    default = _column_value(next(f.default for f in fields(ProbeConfig) if f.name == column))
                    self.db.execute(
                        f"UPDATE cells SET {column} = coalesce(json_extract(config, '$.{column}'), ?)", (default,)
                    )

    def finished(self, *, include_failed: bool = True) -> set[str]:
        """Keys of the cells already stored (done, and failed unless ``include_failed`` is False)."""
        query = "SELECT cell_key FROM cells" + ("" if include_failed else " WHERE status = 'done'")
        return {row[0] for row in self.db.execute(query)}

    def add_result(self, config: ProbeConfig, result: ProbeResult, worker: str | None = None) -> None:
        probs = [p for item in result.items for p in item["token_probs"]]
        items = [
            {k: v for k, v in item.items() if k not in ("token_probs", "initial_token_probs")} for item in result.items
        ]
        row = {
            **self._identity(config, "done", None, worker),
            **{c: _plain(getattr(result, c)) for c in ADDED_COLUMNS if c != "worker"},
            **{c: _plain(getattr(result, c)) for c in COLUMNS},
            "placement_json": json.dumps(result.placement),
            "first_error": json.dumps(result.first_error),
            "loss_curve": json.dumps(result.loss_curve),
            "items": json.dumps(items),
            "token_probs": np.asarray(probs, dtype=np.float16).tobytes(),
        }
        self._insert(row)

    def add_failure(self, config: ProbeConfig, reason: str, worker: str | None = None) -> None:
        self._insert({**self._identity(config, "failed", reason, worker), "length": config.length})

    def _identity(self, config: ProbeConfig, status: str, error: str | None, worker: str | None) -> dict[str, Any]:
        settings = asdict(config)
        return {
            "cell_key": cell_key(config),
            "status": status,
            "error": error,
            "worker": worker,
            "config": json.dumps(settings, sort_keys=True),
            "memlaw_version": __version__,
            "finished_at": time.time(),
            **{c: _column_value(settings[c]) for c in SETTING_COLUMNS},
        }

    def _insert(self, row: dict[str, Any]) -> None:
        names = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self.db:  # one transaction: the whole row or nothing, and its lease ends with it
            self.db.execute("BEGIN IMMEDIATE")
            stored = self.db.execute("SELECT status FROM cells WHERE cell_key = ?", (row["cell_key"],)).fetchone()
            if not (row["status"] == "failed" and stored == ("done",)):  # a late failure never hides a result
                self.db.execute(f"INSERT OR REPLACE INTO cells ({names}) VALUES ({marks})", tuple(row.values()))
            self.db.execute("DELETE FROM leases WHERE cell_key = ?", (row["cell_key"],))

    def rows(self, where: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Stored cells as dictionaries, filtered by equality on setting or measurement columns."""
        where = where or {}
        allowed = {"status", *SETTING_COLUMNS, *COLUMNS, *ADDED_COLUMNS}
        for column in where:
            if column not in allowed:
                raise MemlawInputError(f"cannot filter on '{column}': use one of {', '.join(sorted(allowed))}")
        clause = " AND ".join(f"{c} = ?" for c in where)
        query = "SELECT * FROM cells" + (f" WHERE {clause}" if clause else "") + " ORDER BY finished_at"
        cursor = self.db.execute(query, tuple(where.values()))
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, values, strict=True)) for values in cursor]

    @staticmethod
    def token_probs(row: dict[str, Any]) -> np.ndarray:
        return np.frombuffer(row["token_probs"], dtype=np.float16).astype(np.float32)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _plain(value: Any) -> Any:
    return float(value) if isinstance(value, bool) else value


def _column_value(value: Any) -> Any:
    if value is None or isinstance(value, (int, float, str)):
        return value
    return json.dumps(value)
