"""The track record of verified plans: every plan ``memlaw plan --verify`` trained, with what the
law predicted and what training measured, so that later plans on the same model can say how
often plans on it held. Room verdicts are kept the same way: whether a new file was predicted to
fit in a saved adapter, and what the cycle that trained it in then measured."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

from memlaw.errors import MemlawInputError

TABLE = "verified_plans"
ROOM_TABLE = "room_verdicts"


@dataclass
class VerifiedPlan:
    """One plan and the training run that checked it."""

    model: str
    law: str
    data: str
    rank: float
    length: int
    initial_loss: float
    predicted_final_loss: float
    final_loss: float
    certified: bool
    exact_match: float
    predicted_steps: float | None
    steps: int
    predicted_seconds: float | None
    seconds: float
    #: The adapter kind trained (bypass or peft): a track record is kept per model and kind.
    placement: str = "bypass"

    def describe(self) -> str:
        steps = "" if self.predicted_steps is None else f"{self.predicted_steps:,.0f} → "
        time = "" if self.predicted_seconds is None else f"{self.predicted_seconds:.0f} → "
        return (
            f"predicted against measured at rank {self.rank:g}: final loss {self.predicted_final_loss:.3f} → "
            f"{self.final_loss:.3f} nats/token; certified: {'yes' if self.certified else 'no'} "
            f"(exact match {self.exact_match:.0%}); steps {steps}{self.steps:,}; seconds {time}{self.seconds:.0f}"
        )


@dataclass
class VerifiedRoom:
    """One room verdict (does the new file fit?) and the cycle that trained the file in."""

    model: str
    law: str
    adapter: str
    data: str
    #: The rank the cycle trained at (the grown one where it grew); predicted_fit is for this rank.
    rank: int
    held_tokens: int
    new_tokens: int
    predicted_fit: bool
    #: The rank the law planned for everything held plus the new file (0: beyond full rank).
    union_rank: int
    certified: bool
    new_certified: int
    new_items: int
    held_certified: int
    held_items: int
    steps: int
    seconds: float
    placement: str = "peft"

    @property
    def correct(self) -> bool:
        """The verdict held: predicted to fit and certified, or predicted not to fit and not certified."""
        return bool(self.predicted_fit) == bool(self.certified)


_COLUMNS = {"str": "TEXT", "float": "REAL", "int": "INTEGER", "bool": "INTEGER"}
#: Each table and the record its rows hold.
_TABLES = {TABLE: VerifiedPlan, ROOM_TABLE: VerifiedRoom}


class TrackRecord:
    """A SQLite file of verified plans (one table, ``verified_plans``)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def check(self) -> None:
        """Refuse, before any training, a place that cannot keep a track record."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise MemlawInputError(f"cannot create {self.path.parent} ({err}): pass another track_record=") from err
        with closing(self._connect(create=True)) as db, db:
            pass

    def record(self, verified: VerifiedPlan | VerifiedRoom) -> None:
        """Add a verified plan or room verdict."""
        table = ROOM_TABLE if isinstance(verified, VerifiedRoom) else TABLE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect(create=True)) as db, db:
            row = {**asdict(verified), "created": datetime.now(UTC).isoformat(timespec="seconds")}
            db.execute(
                f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values())
            )

    def rooms(self) -> list[VerifiedRoom]:
        """Every room verdict recorded, oldest first."""
        if not self.path.is_file():
            return []
        with closing(self._connect(create=False)) as db:
            if ROOM_TABLE not in _tables(db):
                return []
            names = [f.name for f in fields(VerifiedRoom)]
            rows = db.execute(f"SELECT {', '.join(names)} FROM {ROOM_TABLE} ORDER BY rowid").fetchall()
        return [VerifiedRoom(**dict(zip(names, row, strict=True))) for row in rows]

    def room_summary(self, model: str, placement: str) -> tuple[int, int]:
        """(room verdicts checked on ``model``'s ``placement`` adapters, of which right)."""
        verdicts = [r for r in self.rooms() if r.model == model and r.placement == placement]
        return len(verdicts), sum(r.correct for r in verdicts)

    def summary(self, model: str, placement: str = "bypass") -> tuple[int, int]:
        """(plans verified on ``model``'s ``placement`` adapters, of which certified)."""
        if not self.path.is_file():
            return 0, 0
        with closing(self._connect(create=False)) as db:
            # records from before the placement column were all bypass plans
            kind = "COALESCE(placement, 'bypass')" if "placement" in _columns(db) else "'bypass'"
            total, certified = db.execute(
                f"SELECT COUNT(*), COALESCE(SUM(certified), 0) FROM {TABLE} WHERE model = ? AND {kind} = ?",
                (model, placement),
            ).fetchone()
        return int(total), int(certified)

    def _connect(self, *, create: bool) -> sqlite3.Connection:
        """Open the file, refusing (before writing anything) a database that is not a track record."""
        try:
            db = sqlite3.connect(self.path)
            tables = _tables(db)
        except sqlite3.OperationalError as err:  # a folder that cannot be written, a locked file...
            raise MemlawInputError(f"cannot open {self.path} ({err}): pass another track_record=") from err
        except sqlite3.DatabaseError as err:
            raise MemlawInputError(f"{self.path} is not a SQLite database ({err}): pass another track_record=") from err
        if tables and TABLE not in tables:
            db.close()
            raise MemlawInputError(
                f"{self.path} is a SQLite database without a {TABLE} table (not memlaw's track record): "
                "pass another track_record="
            )
        if not create:
            return db
        for table, record in _TABLES.items():
            if table not in tables:
                columns = ", ".join(f"{f.name} {_COLUMNS[f.type.split(' ')[0]]}" for f in fields(record))
                db.execute(f"CREATE TABLE {table} ({columns}, created TEXT)")
        if "placement" not in _columns(db):  # a track record from before the column
            db.execute(f"ALTER TABLE {TABLE} ADD COLUMN placement TEXT")
        return db


def _tables(db: sqlite3.Connection) -> set[str]:
    return {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _columns(db: sqlite3.Connection) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({TABLE})")}
