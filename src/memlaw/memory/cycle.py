"""A training cycle that adds a new file to a saved adapter and certifies the union.

The adapter's settings come from its folder (model, placement, rank, prompt format, the rate it
trained at); only how to train may change. Its weights are loaded, grown first when a larger
rank is asked for (the new components start with zero output, so the adapter's function is
unchanged). The data is what it holds (its stored token ids) then the new items; the objective
is ``Replay`` around the cycle's method. Training ends as ``memlaw train`` does: certified, or the
tokens still below p 0.5 stop improving, or the step cap; but where they stop improving short of
certification, a finishing phase trains them alone first (``finish_stubborn``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memlaw.config import typed_settings
from memlaw.data.encoding import EncodedData
from memlaw.errors import MemlawInputError
from memlaw.memory.account import AdapterMemory
from memlaw.memory.replay import Replay
from memlaw.probe.config import ProbeConfig
from memlaw.probe.data import check_fits, prepare
from memlaw.training.methods import make_objective

if TYPE_CHECKING:
    from memlaw.models.loading import LoadedModel
    from memlaw.probe.result import ProbeResult

#: Settings that make the adapter what it is: a cycle takes them from the adapter's folder.
FIXED_BY_ADAPTER = (
    "model", "gguf_file", "dtype", "placement", "rank", "layer", "init", "dropout", "target_modules", "lora_alpha",
    "prompt_format", "system_prompt", "end_token",
)  # fmt: skip


@dataclass
class CycleReport:
    """What one cycle did: new items certified, held items that slipped and were restored, cost."""

    cycle: int
    data: str
    rank: int
    grown_from: int | None
    new_items: int
    new_certified: int
    #: Items of the new file the adapter held already (trained as held items, not counted as new).
    already_held: int
    held_items: int
    #: Held items certified when the cycle began.
    held_certified_before: int
    #: Of those, the ones seen below p 0.5 during training, and how many of those ended certified.
    slipped: int
    restored: int
    #: Held items certified at the end.
    held_certified: int
    #: Every item, held and new, certified at the end.
    certified: bool
    steps: int
    seconds: float
    #: The room verdict given before the cycle (``memlaw.room``), when one was asked for.
    room: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def first_cycle(result: ProbeResult) -> CycleReport:
    """A first training, as the first entry of an adapter's cycle history."""
    certified = sum(not item["stubborn_positions"] for item in result.items)
    return CycleReport(
        cycle=1, data=result.config["data"], rank=result.placement["rank"], grown_from=None,
        new_items=result.num_items, new_certified=certified, already_held=0, held_items=0, held_certified_before=0,
        slipped=0, restored=0, held_certified=0, certified=result.certified, steps=result.steps,
        seconds=result.seconds,
    )  # fmt: skip


def save_trained(result: ProbeResult, folder: str | Path, config: ProbeConfig) -> None:
    """Save a first training's adapter with its item store, as cycle 1 of its history."""
    result.save_adapter(folder, config, cycles=[first_cycle(result).to_dict()])


def cycle_config(memory: AdapterMemory, data: str, grow: int | None, settings: dict[str, Any]) -> ProbeConfig:
    """The adapter's own settings for a cycle on ``data``; ``settings`` may change only how to train."""
    settings = typed_settings(ProbeConfig, settings, {})
    fixed = sorted(set(settings) & set(FIXED_BY_ADAPTER))
    if fixed:
        hint = "; raise the rank with grow=" if "rank" in fixed else ""
        raise MemlawInputError(
            f"{fixed[0]}= is fixed by the adapter in {memory.folder} ({getattr(memory.config, fixed[0])!r}): "
            f"a cycle trains that adapter{hint}"
        )
    if "data" in settings:
        raise MemlawInputError("data= is the cycle's new file: give it as train's first argument, not as a setting")
    if settings.get("lr_search"):
        raise MemlawInputError(
            "lr_search= does not apply to a cycle: it trains at the rate the adapter trained at (set lr= to change it)"
        )
    # a length that cut the first data does not cut the new file; a cycle finishes its stubborn
    # tokens unless told not to (one token of a new record at p 0.1 ended a cycle short otherwise)
    until = settings.get("until", memory.config.until)
    changes = {"length": None, "finish_stubborn": until == "converged", **settings}
    config = replace(memory.config, **{**changes, "data": str(data), "lr_search": False})
    if grow is None:
        return config
    if grow <= memory.rank:
        raise MemlawInputError(f"grow= {grow} is not above the adapter's rank {memory.rank}: give a larger rank")
    # LoRA scales by alpha / rank: keep the scale, and with it the adapter's function
    alpha = None if config.lora_alpha is None else config.lora_alpha * grow / memory.rank
    return replace(config, rank=grow, lora_alpha=alpha)


def union_data(memory: AdapterMemory, new: EncodedData) -> tuple[EncodedData, int]:
    """What the adapter holds, then the new items it does not hold yet; and how many were held already.

    A new item whose prompt is held with another answer is refused: one prompt cannot recall two."""
    held = {item.prompt_ids: item for item in memory.data.items}
    fresh = []
    for item in new.items:
        known = held.get(item.prompt_ids)
        if known is None:
            fresh.append(item)
            held[item.prompt_ids] = item
        elif known.supervised_ids != item.supervised_ids:
            raise MemlawInputError(
                f"the new item {item.key!r} is already held with another answer: remove it from the new file, "
                "or train a new adapter"
            )
    if not fresh:
        raise MemlawInputError("every item of the new file is held already: nothing to add")
    return EncodedData(memory.data.items + tuple(fresh)), len(new.items) - len(fresh)


def train_into(
    folder: str | Path,
    data: str | Path,
    *,
    out: str | Path | None = None,
    grow: int | None = None,
    loaded: LoadedModel | None = None,
    progress: bool = False,
    room: dict[str, Any] | None = None,
    **settings: Any,
) -> tuple[ProbeResult, CycleReport]:
    """Add ``data`` to the adapter saved in ``folder``; with ``out``, save the result there
    (adapter, settings and recall.json with every item's cycle and the cycle history, ``room``
    the verdict given before the cycle). ``result.cycle`` is the report as a dict."""
    from memlaw.probe.run import probe_together

    memory = AdapterMemory.load(folder)
    config = cycle_config(memory, str(data), grow, settings)
    loaded, new = prepare(config, loaded)
    union, already = union_data(memory, new)
    check_fits(config, union, loaded.model.config)
    held = len(memory.items)
    replay = Replay(make_objective(config.method, config.method_options), held)
    (result,) = probe_together([config], loaded, union, progress=progress, objective=replay, start_from=folder)
    certified = [not item["stubborn_positions"] for item in result.items]
    before = {i for i, item in enumerate(memory.items) if item.certified}
    slipped = replay.slipped & before
    report = CycleReport(
        cycle=memory.next_cycle, data=str(data), rank=config.rank, grown_from=memory.rank if grow else None,
        new_items=len(union.items) - held, new_certified=sum(certified[held:]), already_held=already, held_items=held,
        held_certified_before=len(before), slipped=len(slipped), restored=sum(certified[i] for i in slipped),
        held_certified=sum(certified[:held]), certified=result.certified, steps=result.steps, seconds=result.seconds,
        room=room,
    )  # fmt: skip
    result.cycle = report.to_dict()
    if out is not None:
        cycles = [item.cycle for item in memory.items] + [report.cycle] * report.new_items
        result.save_adapter(out, config, item_cycles=cycles, cycles=[*memory.cycles, report.to_dict()])
    return result, report
