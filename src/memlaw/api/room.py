"""``memlaw.room``: what a saved adapter holds, the room the law leaves it, and whether a new file fits.

Capacity is the law's: the most answer tokens the adapter's rank is predicted to certify (with
the plans' probability, 90 % by default) at the mean initial loss of the content. What it holds
is read from its item store; a new file is measured under the base model as ``memlaw plan --data``
measures it. A new file fits when the law plans the adapter's rank, or less, for everything held
plus the new items; when it does not, the verdict names the rank to grow to and the rank of a
second adapter for the new file alone.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memlaw.api.plan import ChosenLaw, choose_law, default_track_record, plan_target
from memlaw.errors import MemlawInputError
from memlaw.law.fit import MemoryLaw
from memlaw.law.library import layer_list
from memlaw.law.plan import BeyondFullRank, plan_length, plan_rank
from memlaw.law.track import TrackRecord

if TYPE_CHECKING:
    from memlaw.memory import AdapterMemory
    from memlaw.models.loading import LoadedModel


@dataclass
class Content:
    """Answer tokens and their summed loss under the base model (nats)."""

    items: int
    tokens: int
    nats: float

    @property
    def initial_loss(self) -> float:
        return self.nats / self.tokens

    @property
    def bits(self) -> float:
        return self.nats / math.log(2)

    def __add__(self, other: Content) -> Content:
        return Content(self.items + other.items, self.tokens + other.tokens, self.nats + other.nats)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "initial_loss": self.initial_loss, "bits": self.bits}


@dataclass
class Room:
    """A room verdict for the adapter in ``adapter``."""

    adapter: str
    rank: int
    held: Content
    certified_items: int
    #: The law used, or why there is none for this adapter (then nothing below is predicted).
    law: str | None
    no_law: str | None = None
    confidence: float | None = None
    #: Answer tokens the rank holds at the held content's initial loss.
    capacity: float | None = None
    #: The new file, when one was given: its items not held yet, and items it shares with the adapter.
    new: Content | None = None
    new_data: str | None = None
    already_held: int = 0
    fits: bool | None = None
    #: Rank the law plans for everything held plus the new items (None: beyond full rank).
    union_rank: int | None = None
    #: Rank of a second adapter for the new items alone.
    second_adapter_rank: int | None = None
    warnings: list[str] = field(default_factory=list)
    #: (room verdicts checked by cycles on this model's adapters of this kind, of which right).
    track: tuple[int, int] | None = None
    #: The model the new file was measured under, reused by a cycle that trains it in.
    loaded: LoadedModel | None = field(default=None, repr=False, compare=False)

    def fits_at(self, rank: int) -> bool:
        """Whether the law plans ``rank`` or less for everything held plus the new items."""
        return self.union_rank is not None and self.union_rank <= rank

    @property
    def share(self) -> float | None:
        """Share of the capacity the held content uses."""
        return None if self.capacity is None else self.held.tokens / self.capacity

    @property
    def room_tokens(self) -> float | None:
        """Answer tokens of content like the held content that still fit."""
        return None if self.capacity is None else max(0.0, self.capacity - self.held.tokens)

    def to_dict(self) -> dict[str, Any]:
        record = {
            "adapter": self.adapter, "rank": self.rank, "held": self.held.to_dict(),
            "certified_items": self.certified_items, "law": self.law, "no_law": self.no_law,
            "confidence": self.confidence, "capacity_tokens": self.capacity, "share": self.share,
            "room_tokens": self.room_tokens,
        }  # fmt: skip
        if self.new is not None:
            record.update(
                new={**self.new.to_dict(), "data": self.new_data, "already_held": self.already_held},
                fits=self.fits, union_rank=self.union_rank, grow_to=None if self.fits else self.union_rank,
                second_adapter_rank=self.second_adapter_rank,
            )  # fmt: skip
        if self.track is not None:
            record["track_record"] = {"checked": self.track[0], "right": self.track[1]}
        record["warnings"] = self.warnings
        return record

    def describe(self) -> list[str]:
        held = self.held
        lines = [
            f"{self.adapter}: rank {self.rank}, holds {held.items} items ({self.certified_items} certified), "
            f"{held.tokens:,} answer tokens, {held.bits:,.0f} bits (initial loss {held.initial_loss:.3g} nats/token)"
        ]
        if self.capacity is None:
            lines.append(f"capacity: unknown ({self.no_law})")
        else:
            aim = (
                "a mean final loss below ln 2" if self.confidence is None
                else f"certified with probability {self.confidence:.0%}"
            )  # fmt: skip
            lines.append(
                f"capacity at this content's initial loss: about {self.capacity:,.0f} answer tokens ({aim}, by "
                f"{self.law}); used {self.share:.0%}, room for about {self.room_tokens:,.0f} more tokens like these"
            )
        if self.new is not None:
            new = self.new
            shared = f" ({self.already_held} more held already)" if self.already_held else ""
            lines.append(
                f"{self.new_data}: {new.items} new items{shared}, {new.tokens:,} answer tokens, {new.bits:,.0f} bits "
                f"(initial loss {new.initial_loss:.3g} nats/token)"
            )
            if self.fits is None:
                lines.append("verdict: none (no law for this adapter)")
            elif self.fits:
                lines.append(f"verdict: fits: the law plans rank {self.union_rank} for all it holds plus the new items")
            else:
                grow = (
                    "no rank holds it all (beyond full rank)" if self.union_rank is None
                    else f"grow it to rank {self.union_rank} (memlaw train NEW --into ADAPTER --grow {self.union_rank})"
                )  # fmt: skip
                second = (
                    "split the new file: no single adapter of this kind holds it" if self.second_adapter_rank is None
                    else f"train the new items into a second adapter of rank {self.second_adapter_rank}"
                )  # fmt: skip
                lines.append(f"verdict: does not fit: {grow}, or {second}")
        if self.track is not None and self.track[0]:
            checked, right = self.track
            lines.append(f"{checked} room verdicts checked by cycles on this model's adapters: {right} right")
        lines += [f"warning: {w}" for w in self.warnings]
        return lines


def adapter_law(memory: AdapterMemory, law: MemoryLaw | str | Path | None) -> ChosenLaw:
    """The law for the saved adapter: the one given, or the one calibrated on its model and adapter."""
    config = memory.config
    layer = config.layer
    if isinstance(layer, (int, list)) and memory.layers:
        layer = memory.layers  # where it sits, counted from 0: no law needs the model's depth for it
    text = None if layer is None else layer if isinstance(layer, str) else ",".join(map(str, layer_list(layer)))
    modules = config.target_modules if config.placement == "peft" else None
    return choose_law(law, model=config.model, placement=config.placement, target_modules=modules, layer=text)


def room(
    adapter: str | Path,
    *,
    data: str | Path | None = None,
    law: MemoryLaw | str | Path | None = None,
    fields: list[str] | None = None,
    loaded: LoadedModel | None = None,
    track_record: str | Path | None = None,
) -> Room:
    """How much the adapter saved in ``adapter`` holds and has left; with ``data``, whether it fits,
    and how often verdicts checked on this model held (``track_record``, default: memlaw's own)."""
    from memlaw.memory import AdapterMemory

    memory = AdapterMemory.load(adapter)
    held = Content(len(memory.items), memory.length, sum(item.initial_nats for item in memory.items))
    verdict = Room(str(adapter), memory.rank, held, memory.certified, law=None)
    try:
        chosen = adapter_law(memory, law)
    except MemlawInputError as err:
        if law is not None:  # the user named a law that does not apply: say so
            raise
        verdict.no_law = str(err)
        chosen = None
    if chosen is not None:
        target_loss, confidence = plan_target(chosen.law, None, None)
        target = {"target_loss": target_loss, "confidence": confidence}
        verdict.law, verdict.confidence = chosen.name, confidence
        planned = plan_length(chosen.law, memory.rank, initial_loss=held.initial_loss, **target)
        verdict.capacity, verdict.warnings = float(planned.length), list(planned.warnings)
    if data is not None:
        measure_new(verdict, memory, str(data), fields, loaded)
        if chosen is not None:
            judge(verdict, chosen.law, target)
            track = TrackRecord(track_record or default_track_record())
            verdict.track = track.room_summary(memory.config.model, memory.config.placement)
    return verdict


def measure_new(
    verdict: Room, memory: AdapterMemory, data: str, fields: list[str] | None, loaded: LoadedModel | None
) -> None:
    """The new file's items the adapter does not hold, measured under the base model."""
    from memlaw.data.encoding import EncodedData
    from memlaw.memory.cycle import cycle_config, union_data
    from memlaw.probe.content import data_losses
    from memlaw.probe.data import prepare

    config = cycle_config(memory, data, None, {} if fields is None else {"fields": fields})
    loaded, new = prepare(config, loaded)
    verdict.loaded = loaded
    union, verdict.already_held = union_data(memory, new)
    fresh = data_losses(loaded, EncodedData(union.items[len(memory.items) :]), config.eval_batch_size)
    verdict.new, verdict.new_data = Content(len(fresh.keys), fresh.length, float(fresh.item_loss_sums.sum())), data


def judge(verdict: Room, law: MemoryLaw, target: dict[str, Any]) -> None:
    """Fits when the law plans the adapter's rank or less for what it holds plus the new items."""
    assert verdict.new is not None
    verdict.union_rank = rank_for(law, verdict.held + verdict.new, target, verdict.warnings)
    verdict.fits = verdict.fits_at(verdict.rank)
    verdict.second_adapter_rank = rank_for(law, verdict.new, target, verdict.warnings)


def rank_for(law: MemoryLaw, content: Content, target: dict[str, Any], warnings: list[str]) -> int | None:
    """The rank the law plans for ``content``, its warnings added to ``warnings``; None beyond full
    rank (no adapter of this kind holds it)."""
    try:
        planned = plan_rank(law, content.tokens, initial_loss=content.initial_loss, **target)
    except BeyondFullRank:
        return None
    warnings += [w for w in planned.warnings if w not in warnings]
    return int(planned.rank)
