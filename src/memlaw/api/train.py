"""``memlaw.train``: memorise a file into an adapter until recall is certified, as ``memlaw train`` does.

By default it trains what ``memlaw.plan`` plans for, with the calibrated law's own budget: a PEFT
LoRA on the MLP (gate, up and down projections) of the layer two below the top, SFT with the
learning rate searched around 0.03, until every answer token has p > 0.5 under teacher forcing
(certified), the tokens still below stop improving, or the step cap. Greedy decoding then checks
each item verbatim.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from memlaw.config import build_config
from memlaw.constants import TRAIN_DEFAULTS
from memlaw.errors import MemlawInputError
from memlaw.io import check_input_file, check_outputs
from memlaw.probe.config import ProbeConfig

if TYPE_CHECKING:
    from memlaw.law.fit import MemoryLaw
    from memlaw.models.loading import LoadedModel
    from memlaw.probe.result import ProbeResult


def train_config(data: str | Path, **settings) -> ProbeConfig:
    """The settings ``memlaw.train`` trains ``data`` with: its defaults, then ``settings`` (any
    ``ProbeConfig`` field: ``rank``, ``lr``, ``method``, ``layer``...), type-checked."""
    if "data" in settings:
        raise MemlawInputError("give the file as train's first argument, not data=")
    return build_config(ProbeConfig, {**TRAIN_DEFAULTS, **settings, "data": str(data)}, {})


def train(
    data: str | Path,
    *,
    out: str | Path | None = None,
    into: str | Path | None = None,
    grow: int | None = None,
    law: MemoryLaw | str | Path | None = None,
    track_record: str | Path | None = None,
    progress: bool = False,
    loaded: LoadedModel | None = None,
    **settings,
) -> ProbeResult:
    """Train ``data`` (JSONL, CSV or Parquet records, or plain text) into an adapter.

    Returns the measurements: ``certified``, ``items`` (each with its exact match, stubborn tokens
    and where greedy decoding first diverges), ``steps``, ``seconds`` and the rest of
    ``ProbeResult``; ``result.adapter`` is the trained adapter. With ``out``, the adapter (PEFT's
    format: ``PeftModel.from_pretrained`` loads it), its settings and recall.json (what it holds,
    item by item) are saved in that new folder. ``loaded`` reuses a model already loaded (the
    adapter is then attached to it).

    ``into=DIR`` adds ``data`` to the adapter saved in DIR instead of training a new one: it trains
    what DIR holds plus ``data`` (a held item costs nothing until one of its tokens slips below p 0.5), certifies
    the union and saves it in ``out`` (a new folder; DIR is left as it was). ``grow=R`` first
    raises the adapter's rank to R, keeping its function. ``result.cycle`` then says what the
    cycle did, with the room verdict the law gave before it (``memlaw.room``), which is recorded
    with its outcome in ``track_record`` (default: memlaw's own track record) when a law applies.
    """
    check_input_file(data, "no such data file (give a JSONL, CSV, Parquet or text file)")
    if into is None:
        if grow is not None or law is not None or track_record is not None:
            raise MemlawInputError("grow=, law= and track_record= apply to a cycle into a saved adapter: add into=")
        config = train_config(data, **settings)
        check_outputs(folders=[("out", out)], inputs=[("data", data)])
        return run_training(config, out=out, progress=progress, loaded=loaded)
    if "data" in settings:
        raise MemlawInputError("give the file as train's first argument, not data=")
    check_outputs(folders=[("out", out)], inputs=[("data", data), ("into", into)])
    return run_cycle(
        into, data, out=out, grow=grow, law=law, track_record=track_record, progress=progress, loaded=loaded,
        settings=settings,
    )  # fmt: skip


def run_cycle(
    into: str | Path, data: str | Path, *, out: str | Path | None, grow: int | None, law, track_record,
    progress: bool, loaded: LoadedModel | None, settings: dict,
) -> ProbeResult:  # fmt: skip
    """A cycle into a saved adapter, with the room verdict before it recorded against its outcome."""
    from memlaw.api.plan import default_track_record
    from memlaw.api.room import room
    from memlaw.law.track import TrackRecord, VerifiedRoom
    from memlaw.memory import AdapterMemory, train_into
    from memlaw.memory.cycle import cycle_config
    from memlaw.probe.data import prepare

    # what the user got wrong is refused before any model loads, and the model loads as the cycle asks
    config = cycle_config(AdapterMemory.load(into), str(data), grow, settings)
    if track_record is not None:
        TrackRecord(track_record).check()
    loaded, _ = prepare(config, loaded)
    verdict = room(into, data=data, law=law, fields=settings.get("fields"), loaded=loaded, track_record=track_record)
    result, report = train_into(
        into, data, out=out, grow=grow, loaded=verdict.loaded, progress=progress, room=verdict.to_dict(), **settings
    )
    if verdict.fits is not None:
        assert verdict.new is not None and verdict.law is not None
        TrackRecord(track_record or default_track_record()).record(
            VerifiedRoom(
                model=result.config["model"], law=verdict.law, adapter=str(into), data=str(data),
                # the verdict for the rank trained: a grown cycle checks the rank room named
                rank=report.rank, held_tokens=verdict.held.tokens, new_tokens=verdict.new.tokens,
                predicted_fit=verdict.fits_at(report.rank), union_rank=verdict.union_rank or 0,
                certified=result.certified, new_certified=report.new_certified, new_items=report.new_items,
                held_certified=report.held_certified, held_items=report.held_items, steps=result.steps,
                seconds=result.seconds, placement=result.placement["placement"],
            )
        )  # fmt: skip
    return result


def run_training(
    config: ProbeConfig, *, out: str | Path | None = None, progress: bool = False, loaded: LoadedModel | None = None
) -> ProbeResult:
    """Train ``config`` (settings already checked, outputs too) and save the adapter in ``out``."""
    from memlaw.memory import save_trained
    from memlaw.probe.run import run_probe

    result = run_probe(config, loaded, progress=progress)
    if out is not None:
        save_trained(result, out, config)
    return result
