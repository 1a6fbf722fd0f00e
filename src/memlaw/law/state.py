"""What a fitted law knows besides its constants, typed: where its points came from
(``Provenance``), what planning needs (``Reference``) and the adapter it holds for
(``AdapterSpec``). Every fitted or loaded ``MemoryLaw`` has all three, empty where unknown."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from memlaw.constants import MLP_MODULES

#: Provenance entries that describe the law's points, not how to train: never copied into a budget.
NOT_SETTINGS = ("data",)


@dataclass
class Provenance:
    """The probe settings the law's points were measured with, by name: one value, or the sorted
    list of values where the points differ; plus ``ratios`` and ``lr_schedule``."""

    settings: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str, default: Any = None) -> Any:
        return self.settings.get(name, default)

    def __contains__(self, name: str) -> bool:
        return name in self.settings

    @property
    def model(self) -> str | None:
        model = self.settings.get("model")
        return model if isinstance(model, str) else None

    @property
    def placement(self) -> str:
        return self.settings.get("placement", "bypass")

    def budget(self, names: tuple[str, ...]) -> dict[str, Any]:
        """The recorded values of the probe settings ``names`` that say how to train."""
        return {name: self.settings[name] for name in names if name in self.settings and name not in NOT_SETTINGS}

    def to_dict(self) -> dict[str, Any]:
        return dict(self.settings)

    @classmethod
    def from_dict(cls, values: Any) -> Provenance:
        if not isinstance(values, dict):
            raise TypeError(f"provenance is {values!r}, not a mapping")
        return cls(dict(values))


@dataclass
class Reference:
    """What planning needs besides the constants: the mean initial loss the probes measured per
    (ratio, ℓ), the trainable parameters per unit of rank, and, where calibration recorded the
    model's shape, its full rank (plans never go beyond it) and its layer count."""

    initial_loss: list[dict[str, Any]] = field(default_factory=list)
    params_per_rank: float | None = None
    max_rank: int | None = None
    layers: int | None = None

    def ratios(self) -> list[float | None]:
        return sorted({row["ratio"] for row in self.initial_loss}, key=lambda r: -1 if r is None else r)

    def with_model_shape(self, *, max_rank: int, layers: int) -> Reference:
        return replace(self, max_rank=max_rank, layers=layers)

    def to_dict(self) -> dict[str, Any]:
        values = {"initial_loss": self.initial_loss, "params_per_rank": self.params_per_rank}
        values.update({name: getattr(self, name) for name in ("max_rank", "layers") if getattr(self, name) is not None})
        return values

    @classmethod
    def from_dict(cls, values: Any) -> Reference:
        if not isinstance(values, dict):
            raise TypeError(f"reference is {values!r}, not a mapping")
        rows = values.get("initial_loss", [])
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise TypeError(f"reference initial_loss is {rows!r}, not a list of rows")
        for name in ("max_rank", "layers"):
            value = values.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise TypeError(f"reference {name} is {value!r}, not a whole number")
        return cls(rows, values.get("params_per_rank"), values.get("max_rank"), values.get("layers"))


@dataclass(frozen=True)
class AdapterSpec:
    """An adapter as plans name it: placement, layers (an index, a sorted list, "all", or None
    for the default layer) and, for PEFT, the adapted modules (sorted)."""

    placement: str
    layer: int | list[int] | str | None
    target_modules: list[str] | None

    @classmethod
    def of(cls, placement: str, layer, target_modules) -> AdapterSpec:
        if placement == "peft" and target_modules is None:
            target_modules = list(MLP_MODULES)
        return cls(placement, layer, None if target_modules is None else sorted(target_modules))

    def describe(self) -> str:
        layer = self.layer
        if layer == "all" or layer is None:
            where = "all layers" if layer == "all" else "the default layer"
        else:
            where = f"layer {layer}" if isinstance(layer, int) else f"layers {', '.join(map(str, layer))}"
        if self.placement == "bypass":
            return f"the bypass at {where}"
        return f"PEFT LoRA on {', '.join(self.target_modules)} of {where}"

    def to_dict(self) -> dict[str, Any]:
        return {"placement": self.placement, "layer": self.layer, "target_modules": self.target_modules}
