"""What an adapter saved by ``memlaw train --out`` holds: its settings and its item store.

recall.json keeps every item the adapter was trained on: the record as written, its exact token
ids (what a later cycle replays, so nothing is re-tokenised), whether it is certified (every
token at p > 0.5), the cycle that added it and its summed loss under the base model (what the
law calls its initial loss). probe_config.json keeps the settings it was trained with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from memlaw.data.encoding import EncodedData, EncodedItem, item_from_record
from memlaw.errors import MemlawInputError
from memlaw.placements.base import WEIGHTS_FILE
from memlaw.probe.config import ProbeConfig

SETTINGS_FILE = "probe_config.json"
RECALL_FILE = "recall.json"
SAVED_BY = "give a folder written by memlaw train --out or memlaw probe --save"


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:  # JSON errors and undecodable bytes
        raise MemlawInputError(f"{path} is damaged ({type(err).__name__}: {err}); {what}") from err


def read_settings(folder: str | Path) -> ProbeConfig:
    """The settings a saved adapter was trained with (its model, prompt format, placement...)."""
    path = Path(folder)
    if not path.exists():
        raise MemlawInputError(f"{folder} not found: {SAVED_BY}")
    settings_file = path / SETTINGS_FILE
    if not settings_file.is_file():
        raise MemlawInputError(f"{folder} is not an adapter saved by memlaw (no {SETTINGS_FILE}): {SAVED_BY}")
    saved = read_json(settings_file, "train the adapter again")
    if not isinstance(saved, dict):
        raise MemlawInputError(f"{settings_file} is damaged (not a JSON object); train the adapter again")
    try:
        return ProbeConfig(**{f.name: saved[f.name] for f in fields(ProbeConfig) if f.name in saved})
    except TypeError as err:
        raise MemlawInputError(f"{settings_file} is damaged ({err}); train the adapter again") from err


@dataclass(frozen=True)
class HeldItem:
    item: EncodedItem
    certified: bool
    #: The training cycle that added it (1: the adapter's first training).
    cycle: int
    #: Its answer tokens' summed loss under the base model, in nats.
    initial_nats: float


@dataclass
class AdapterMemory:
    """A saved adapter's account: its settings (``lr`` the rate it trained at), what it holds, and
    what each of its training cycles did."""

    folder: Path
    config: ProbeConfig
    items: list[HeldItem]
    cycles: list[dict[str, Any]]
    #: The layers the adapter sits on, counted from 0 (its settings may count from the top).
    layers: list[int] | None = None

    @classmethod
    def load(cls, folder: str | Path) -> AdapterMemory:
        config = read_settings(folder)
        path = Path(folder) / RECALL_FILE
        if not path.is_file():
            raise MemlawInputError(f"{folder} holds no {RECALL_FILE}: {SAVED_BY}")
        recall = read_json(path, "train the adapter again")
        try:
            items = [
                HeldItem(item_from_record(r), bool(r["certified"]), int(r["cycle"]), float(r["initial_nats"]))
                for r in recall["items"]
            ]
            trained_lr = float(recall["config"]["lr"])
            cycles = list(recall["cycles"])
            layers = recall.get("placement", {}).get("layers")
        except (AttributeError, KeyError, TypeError, ValueError) as err:
            missing = f"no {err}" if isinstance(err, KeyError) else f"{type(err).__name__}: {err}"
            raise MemlawInputError(
                f"{path} does not keep the items it holds ({missing} in its records): it was saved by an older "
                "memlaw or damaged; train the adapter again"
            ) from err
        if not items:
            raise MemlawInputError(f"{path} holds no items; train the adapter again")
        if not (Path(folder) / WEIGHTS_FILE).is_file():
            raise MemlawInputError(f"{folder} holds no {WEIGHTS_FILE} (incomplete folder): train the adapter again")
        return cls(Path(folder), replace(config, lr=trained_lr), items, cycles, layers)

    @property
    def rank(self) -> int:
        return self.config.rank

    @property
    def data(self) -> EncodedData:
        return EncodedData(tuple(held.item for held in self.items))

    @property
    def length(self) -> int:
        """Answer tokens held."""
        return self.data.length

    @property
    def certified(self) -> int:
        return sum(held.certified for held in self.items)

    @property
    def next_cycle(self) -> int:
        return 1 + max(held.cycle for held in self.items)
