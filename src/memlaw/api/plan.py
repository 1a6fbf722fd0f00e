"""``memlaw.plan``: the rank a length or a file needs (or what a rank holds), as ``memlaw plan``
computes it, with the adapter's ``LoraConfig``, the law's training budget and a way to verify it.

Without ``law``, the law calibrated for ``model`` (default: the default model) and ``placement``
(default: peft, the LoRA ``memlaw.train`` trains) is used: the user's own, from ``memlaw
calibrate``, else the one packaged with memlaw. A law holds only for the adapter it was
calibrated on, so naming another (``target_modules``, ``layer``) is refused with how to
calibrate for it. Nothing here imports torch until a file is planned for.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memlaw.constants import CERTIFY_LOSS, DEFAULT_LAYER_FRACTION, DEFAULT_MODEL, TRAIN_DEFAULTS
from memlaw.errors import MemlawInputError
from memlaw.io import write_dir_atomic, write_json_atomic
from memlaw.law.fit import MemoryLaw
from memlaw.law.library import check_law_adapter, find_law, layer_list, memlaw_home, same_setting
from memlaw.law.library import load_law as read_law
from memlaw.law.plan import LawPlan, content_warning, margin_for, plan_items, plan_length, plan_rank
from memlaw.law.state import AdapterSpec
from memlaw.law.track import TrackRecord, VerifiedPlan

if TYPE_CHECKING:
    from peft import LoraConfig

    from memlaw.models.loading import LoadedModel
    from memlaw.probe.config import ProbeConfig

#: The certification probability plans aim for when the law can tell it.
DEFAULT_CONFIDENCE = 0.9
#: The adapter plans are for unless the caller names another: what memlaw.train trains.
DEFAULT_PLACEMENT = "peft"


@dataclass
class ChosenLaw:
    """A law, where it came from (for messages) and the adapter it was calibrated on."""

    law: MemoryLaw
    name: str
    adapter: AdapterSpec

    @property
    def model(self) -> str | None:
        return self.law.provenance_.model


def load_law(model: str | None = None, placement: str | None = None, *, path: str | Path | None = None) -> MemoryLaw:
    """The law a plan uses: the file at ``path``, else the one calibrated for ``model`` and ``placement``."""
    return choose_law(path, model=model, placement=placement).law


def choose_law(
    law: MemoryLaw | str | Path | None = None,
    *,
    model: str | None = None,
    placement: str | None = None,
    target_modules: list[str] | None = None,
    layer: str | None = None,
) -> ChosenLaw:
    """The law to plan with, checked against the adapter the caller names."""
    if isinstance(law, MemoryLaw):
        found, name = law, "the given law"
    elif law is not None:
        found, name = read_law(law), str(law)
    else:
        found, name = find_law(model or DEFAULT_MODEL, placement or DEFAULT_PLACEMENT)
    adapter = check_law_adapter(found, name, placement=placement, target_modules=target_modules, layer=layer)
    return ChosenLaw(found, name, adapter)


@dataclass
class Plan:
    """A plan for an adapter: what the law predicts (``prediction``), for which content, and how to
    train it. ``asked`` says what was planned: "rank" (for a length or a file), "length" (for a
    rank) or "items" (how many of a file's items a rank holds)."""

    prediction: LawPlan
    asked: str
    chosen: ChosenLaw
    target_loss: float
    confidence: float | None
    #: The file's measured facts (items, answer tokens, initial loss), when planned for a file.
    content: dict | None = None
    #: With a rank and a file: how many of its items the rank holds.
    items_held: int | None = None
    #: The probe settings that train the plan as the law's probes trained (file plans for a rank).
    training: ProbeConfig | None = None
    #: (verified plans on the law's model, how many certified), from the track record.
    track: tuple[int, int] | None = None
    #: What training the plan measured (``verify``), and why it trained in another precision, if it did.
    verified: VerifiedPlan | None = None
    verify_note: str | None = None
    #: The model the file was measured under, reused by ``verify`` (and by further plans: ``loaded=``).
    loaded: LoadedModel | None = field(default=None, repr=False, compare=False)
    _track_path: str | Path | None = field(default=None, repr=False, compare=False)

    @property
    def rank(self) -> int:
        return int(self.prediction.rank)

    @property
    def length(self) -> float:
        return self.prediction.length

    @property
    def interval(self) -> tuple[float, float] | None:
        """95 % interval of the planned quantity over the law's bootstrap refits."""
        return self.prediction.interval

    @property
    def warnings(self) -> list[str]:
        return self.prediction.warnings

    @property
    def margin(self) -> float | None:
        """How many times the loss reduction a mean of ln 2 needs the plan aims for."""
        return None if self.confidence is None else margin_for(self.chosen.law, self.confidence)

    def training_settings(self) -> dict[str, Any]:
        """The law's budget (learning rate, method, stopping rule, precision...) for training this plan."""
        from memlaw.law.points import PROVENANCE

        return self.chosen.law.provenance_.budget(PROVENANCE)

    def lora_config(self) -> LoraConfig:
        """PEFT's ``LoraConfig`` of the planned adapter: the law's modules and layers at the planned rank."""
        from memlaw.placements.peft_lora import lora_config

        return lora_config(self._peft_config())

    def write_peft(self, folder: str | Path) -> Path:
        """The planned adapter's ``adapter_config.json`` (``LoraConfig.from_pretrained(folder)`` loads
        it) and training.json (the law's budget and this plan) in the new folder ``folder``."""
        config = self._peft_config()  # checked before anything is written

        def fill(staging: Path) -> None:
            from memlaw.placements.peft_lora import lora_config

            lora_config(config).save_pretrained(str(staging))
            write_json_atomic(staging / "training.json", {"training": self.training_settings(), "plan": self.to_dict()})

        write_dir_atomic(folder, fill)  # the whole folder or nothing
        return Path(folder)

    def check_peft(self) -> None:
        """Raise unless PEFT can adapt the law's adapter (``write_peft`` and ``lora_config`` would work)."""
        peft_layers(self.chosen)

    def _peft_config(self):
        from memlaw.placements.peft_lora import PeftLoraConfig

        provenance = self.chosen.law.provenance_
        alpha = provenance.get("lora_alpha")
        return PeftLoraConfig(
            self.rank, peft_layers(self.chosen), self.chosen.adapter.target_modules,
            self.rank if alpha is None else alpha, provenance.get("dropout") or 0.0,
        )  # fmt: skip

    def train_command(self) -> str | None:
        """The ``memlaw train`` line that trains this plan as the law's probes trained, for file plans."""
        return None if self.training is None else train_command(self.training, depth=self.chosen.law.reference_.layers)

    def verify(self, *, track_record: str | Path | None = None, progress: bool = False) -> VerifiedPlan:
        """Train the plan as the law's probes trained, on its file at the planned rank, and record
        predicted against measured in the track record (default: track-record.db in $MEMLAW_HOME)."""
        from memlaw.law.verify import autocast_note, verify_plan

        if self.training is None:
            raise MemlawInputError("only a plan for a file can be verified: plan with data=FILE and no rank")
        verified = verify_plan(
            self.prediction, self.training, law_name=self.chosen.name, loaded=self.loaded, progress=progress
        )
        track = TrackRecord(track_record or self._track_path or default_track_record())
        track.record(verified)
        if self.chosen.model is not None:
            self.track = track.summary(self.chosen.model, self.chosen.adapter.placement)
        self.verified, self.verify_note = verified, autocast_note(self.chosen.law, self.training)
        return verified

    def describe(self) -> list[str]:
        """The plan in words, as ``memlaw plan`` prints it."""
        if self.items_held == 0:
            lines = [
                f"rank {self.rank:g} holds none of the items: the first alone needs rank "
                f"{self.content['needed_for_first_item']:g}"
            ]
            lines += [f"warning: {w}" for w in self.warnings]
        else:
            lines = self.prediction.describe(self.asked)
        if self.items_held:
            lines[0] = (
                f"rank {self.rank:g} holds the first {self.items_held} of {self.content['items']} items "
                f"({self.length:g} answer tokens)"
            )
        if self.content is not None:
            lines.insert(
                0,
                f"{self.content['data']}: {self.content['items']} items, {self.content['file_length']} answer tokens, "
                f"initial loss {self.content['file_initial_loss']:.3g} nats/token under the base model",
            )
        if self.training is not None:
            lines.append(f"to train as planned: {self.train_command()}")
        if self.verified is not None:
            lines += [f"note: {self.verify_note}"] * (self.verify_note is not None)
            lines.append(f"verified: {self.verified.describe()}")
        lines.append(f"adapter: {self.chosen.adapter.describe()} (what {self.chosen.name} was calibrated on)")
        if self.track is not None:
            lines.append(
                f"{self.track[0]} verified plans on this model: {self.track[1]} certified "
                f"({self.chosen.adapter.placement} adapters)"
            )
        if self.confidence is not None:
            lines.insert(
                0,
                f"planned to certify recall with probability {self.confidence:.0%}: a predicted loss reduction at "
                f"least {self.margin:.3g}× what a mean loss of ln 2 needs (the law's certification model)",
            )
        return lines

    def to_dict(self) -> dict:
        """The plan as ``memlaw plan --json`` prints it."""
        if self.items_held == 0:
            record = {"rank": self.rank, "items_held": 0, "warnings": self.warnings}
        elif self.asked != "items":
            record = {**self.prediction.to_dict(), f"{self.asked}_interval": self.interval}
        else:
            record = {**self.prediction.to_dict(), "items_held": self.items_held}
        record.update(self.content or {})
        if self.training is not None:
            record["train_command"] = self.train_command()
        if self.verified is not None:
            record["verified"] = {**asdict(self.verified), "note": self.verify_note}
        if self.track is not None:
            placement = self.chosen.adapter.placement
            record["track_record"] = {
                "model": self.chosen.model, "placement": placement, "verified": self.track[0],
                "certified": self.track[1],
            }  # fmt: skip
        record.update(
            law=self.chosen.name, target_loss=None if self.confidence else self.target_loss, confidence=self.confidence
        )
        if self.confidence is not None:
            record["target_margin"] = self.margin
        record["adapter"] = self.chosen.adapter.to_dict()
        return record


def plan(
    data: str | Path | None = None,
    *,
    length: float | None = None,
    rank: int | None = None,
    law: MemoryLaw | str | Path | None = None,
    model: str | None = None,
    placement: str | None = None,
    target_modules: list[str] | None = None,
    layer: str | None = None,
    fields: list[str] | None = None,
    ratio: float | None = None,
    initial_loss: float | None = None,
    confidence: float | None = None,
    target_loss: float | None = None,
    track_record: str | Path | None = None,
    loaded: LoadedModel | None = None,
    data_options: dict | None = None,
) -> Plan:
    """Plan an adapter.

    - ``data=FILE``: the smallest rank that holds the whole file (measured under the law's base
      model, encoded as ``memlaw.train`` encodes it), or with ``rank`` how many of its items fit;
    - ``length=N``: the smallest rank for N answer tokens (``ratio`` or ``initial_loss`` says what
      the content is like);
    - ``rank=R`` alone: the longest length R holds.

    Plans aim for certified recall with probability ``confidence`` (default 0.9 when the law has
    a certification model), or for a mean final loss ``target_loss`` instead. ``data`` may also
    name one of memlaw's generators, with its settings in ``data_options`` (``data="phonebook",
    data_options={"length": 240}``). ``loaded`` reuses a model already loaded.
    """
    if data is not None and (length is not None or ratio is not None or initial_loss is not None):
        raise MemlawInputError("data= measures the length and initial loss itself: drop length, ratio and initial_loss")
    if data is None and length is None and rank is None:
        raise MemlawInputError("say what to plan: length=N, rank=R or data=FILE")
    if data is None and (fields is not None or data_options):
        raise MemlawInputError("fields and data_options need data=FILE")
    if length is not None and rank is not None:
        raise MemlawInputError("give length or rank, not both")
    if confidence is not None and target_loss is not None:
        raise MemlawInputError("give confidence or target_loss, not both")
    chosen = choose_law(law, model=model, placement=placement, target_modules=target_modules, layer=layer)
    target_loss, confidence = plan_target(chosen.law, target_loss, confidence)
    target = {"target_loss": target_loss, "confidence": confidence}
    if data is not None:
        result = _plan_file(chosen, str(data), rank, fields, target, loaded, data_options or {})
    elif length is not None:
        result = Plan(plan_rank(chosen.law, length, ratio=ratio, initial_loss=initial_loss, **target), "rank", chosen,
                      target_loss, confidence)  # fmt: skip
    else:
        result = Plan(plan_length(chosen.law, rank, ratio=ratio, initial_loss=initial_loss, **target), "length",
                      chosen, target_loss, confidence)  # fmt: skip
    result._track_path = track_record
    if chosen.model is not None:
        result.track = TrackRecord(track_record or default_track_record()).summary(
            chosen.model, chosen.adapter.placement
        )
    return result


def default_track_record() -> Path:
    return memlaw_home() / "track-record.db"


def plan_target(law: MemoryLaw, target_loss: float | None, confidence: float | None) -> tuple[float, float | None]:
    """(the mean final loss to plan for, or the certification probability to plan for instead)."""
    if target_loss is not None:
        return target_loss, None
    if confidence is None and law.certification_ is not None:
        confidence = DEFAULT_CONFIDENCE
    if confidence is not None:
        margin_for(law, confidence)  # checks the law can plan for it
    return CERTIFY_LOSS, confidence


def _plan_file(
    chosen: ChosenLaw, data: str, rank: int | None, fields: list[str] | None, target: dict,
    loaded: LoadedModel | None, data_settings: dict,
) -> Plan:  # fmt: skip
    """Plan for a file: the rank for all of it, or with ``rank`` how many items fit."""
    from memlaw.law.verify import law_config
    from memlaw.probe.content import content_losses
    from memlaw.probe.data import prepare

    law = chosen.law
    config = law_config(law, data, fields=fields, **data_settings)
    loaded, _ = prepare(config, loaded)  # the file checked against the model before its weights load
    measured = content_losses(config, loaded)
    content = {"data": data, "items": len(measured.keys), "file_length": measured.length,
               "file_initial_loss": measured.initial_loss}  # fmt: skip
    transfer = content_warning(law, measured.initial_loss)
    if rank is None:
        planned = plan_rank(law, measured.length, initial_loss=measured.initial_loss, **target)
        planned.warnings = transfer + planned.warnings
        # trained as memlaw.train trains it: the law's budget, each answer's end token supervised
        # too, the learning rate searched around the law's
        training = law_config(
            law, data, fields=fields, rank=int(planned.rank), end_token=True, lr_search=True, **data_settings
        )
        return Plan(planned, "rank", chosen, target["target_loss"], target["confidence"], content,
                    training=training, loaded=loaded)  # fmt: skip
    lengths, losses = measured.prefixes()
    held, planned = plan_items(law, rank, lengths, losses, **target)
    if planned is None:
        first = plan_rank(law, float(lengths[0]), initial_loss=float(losses[0]), **target)
        content["needed_for_first_item"] = first.rank
        # what the plan says is the rank asked about, with the transfer warning alone
        none_held = replace(first, rank=rank, warnings=transfer)
        return Plan(none_held, "items", chosen, target["target_loss"], target["confidence"], content, items_held=0)
    planned.warnings = transfer + planned.warnings
    return Plan(planned, "items", chosen, target["target_loss"], target["confidence"], content, items_held=held)


def train_command(config: ProbeConfig, *, depth: int | None = None) -> str:
    """The ``memlaw train`` line that trains exactly as ``config`` (a plan's verification) does:
    every setting of the law's budget that differs from train's own defaults (layers compared
    as indices from 0 in a ``depth``-layer model, modules in any order)."""
    from memlaw.law.points import PROVENANCE
    from memlaw.probe.config import ProbeConfig

    words = ["memlaw", "train", shlex.quote(config.data), "--out", "ADAPTER_DIR"]
    defaults = {f.name: TRAIN_DEFAULTS.get(f.name, f.default) for f in fields(ProbeConfig)}
    for name in (*PROVENANCE, "rank", "fields"):
        value = getattr(config, name)
        if name == "data" or same_setting(name, value, defaults[name], depth):
            continue
        if isinstance(value, list):
            text = ",".join(map(str, value))
        elif value is None or isinstance(value, bool):
            text = str(value).lower()
        else:
            text = str(value)
        words += [f"--{name.replace('_', '-')}", shlex.quote(text)]
    return " ".join(words)


def peft_layers(chosen: ChosenLaw) -> list[int] | str:
    """The layers (indices from 0, or "all") PEFT adapts for the law's adapter, or why it cannot say."""
    adapter, depth = chosen.adapter, chosen.law.reference_.layers
    if adapter.placement != "peft":
        raise MemlawInputError(f"a PEFT config needs a law calibrated on PEFT LoRA; {chosen.name} is for the bypass")
    layers = adapter.layer
    if layers is None and depth is not None:  # memlaw's default layer: about 2/3 of the depth
        layers = round(DEFAULT_LAYER_FRACTION * depth)
    if layers == "all":
        return layers
    if layers is None or any(i < 0 for i in layer_list(layers)):
        raise MemlawInputError(
            f"{chosen.name} does not record its adapter's layers as indices from 0, which PEFT needs: recalibrate it"
        )
    return layer_list(layers)
