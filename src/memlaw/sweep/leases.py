"""Leases: how drivers sharing one store (two ``memlaw sweep`` runs of one grid, a resume beside
a live run) split its cells instead of each training all of them.

A driver claims a stack's cells just before it runs them: one row per cell in the store's
``leases`` table, naming the holder (host, process id and a random token) and an expiry that a
heartbeat thread moves forward while the holder lives. A cell is free when it is not stored and
nobody holds a live lease on it. A lease is dead once it expires, or at once when its holder is
a process of this host that no longer runs, so a killed driver's cells are picked up again: at
once on its own host, after ``LEASE_SECONDS`` elsewhere. Storing a cell deletes its lease in
the same transaction (``ResultsStore``); a driver that ends, even by Ctrl-C, releases the rest.
SQLite's locking (WAL) needs one host's file system: drivers share a store on one machine, not
over a network file system.
"""

from __future__ import annotations

import os
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

#: How long a lease lives without a heartbeat: what a driver killed on another host costs.
LEASE_SECONDS = 60.0
#: How often a live driver renews its leases (well inside their life).
HEARTBEAT_SECONDS = 15.0

LEASES_TABLE = """CREATE TABLE IF NOT EXISTS leases (
    cell_key TEXT PRIMARY KEY, holder TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL,
    expires_at REAL NOT NULL)"""


class Leases:
    """This driver's leases on the cells of the store at ``path``; a context manager that renews
    them while it is open and releases them when it closes."""

    def __init__(self, path: str | Path, *, seconds: float = LEASE_SECONDS, heartbeat: float = HEARTBEAT_SECONDS):
        self.path, self.seconds, self.heartbeat = str(path), seconds, heartbeat
        self.host, self.pid = _host(), os.getpid()
        self.holder = f"{self.host}:{self.pid}:{secrets.token_hex(4)}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_until_stopped, name="memlaw-lease-heartbeat", daemon=True)

    def __enter__(self) -> Leases:
        self._db = _connect(self.path)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        with self._db:
            self._db.execute("DELETE FROM leases WHERE holder = ?", (self.holder,))
        self._db.close()

    def claim(self, keys: Iterable[str], *, retry_before: float | None = None) -> tuple[set[str], set[str]]:
        """Lease every free cell of ``keys``: (the keys now ours, the keys a live driver holds).
        Keys stored meanwhile are in neither, except cells that failed before ``retry_before``
        (a sweep retrying failures retries those once, not every failure another driver stores)."""
        keys = list(keys)
        marks = ", ".join("?" for _ in keys)
        stored_query = f"SELECT cell_key FROM cells WHERE cell_key IN ({marks})"
        if retry_before is not None:
            stored_query += f" AND (status = 'done' OR finished_at >= {float(retry_before)!r})"
        leases_query = f"SELECT cell_key, holder, host, pid, expires_at FROM leases WHERE cell_key IN ({marks})"
        now = time.time()
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")  # no other driver claims between the look and the write
            stored = {key for (key,) in self._db.execute(stored_query, keys)}
            held = {
                key
                for key, holder, host, pid, expires in self._db.execute(leases_query, keys)
                if holder != self.holder and expires > now and not (host == self.host and not _running(pid))
            }
            mine = [k for k in keys if k not in stored and k not in held]
            self._db.executemany(
                "INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?, ?)",
                [(k, self.holder, self.host, self.pid, now + self.seconds) for k in mine],
            )
        return set(mine), held

    def _renew_until_stopped(self) -> None:
        db = _connect(self.path)  # a connection belongs to the thread that made it
        try:
            while not self._stop.wait(self.heartbeat):
                try:
                    with db:
                        renewed = (time.time() + self.seconds, self.holder)
                        db.execute("UPDATE leases SET expires_at = ? WHERE holder = ?", renewed)
                except sqlite3.Error:  # busy past the timeout: the next beat tries again, well inside the life
                    continue
        finally:
            db.close()


def _connect(path: str) -> sqlite3.Connection:
    return sqlite3.connect(path, timeout=30, isolation_level=None)


def _host() -> str:
    """This host, as far as process ids go: its name, and its pid namespace where Linux tells it
    (containers on one host share the name but not their process ids)."""
    try:
        namespace = f"/pid:{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        namespace = ""
    return socket.gethostname() + namespace


def _running(pid: int) -> bool:
    """Whether process ``pid`` of this host still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it runs
        return True
    return True
