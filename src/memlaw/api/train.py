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
from memlaw.constants import LAYERS_FROM_TOP, MLP_MODULES
from memlaw.errors import MemlawInputError
from memlaw.io import check_input_file, check_outputs
from memlaw.probe.config import ProbeConfig

if TYPE_CHECKING:
    from memlaw.models.loading import LoadedModel
    from memlaw.probe.result import ProbeResult

#: What ``memlaw.train`` changes from a probe's defaults: the adapter and budget of the packaged
#: PEFT law, so that training at a planned rank is what the plan predicted (a test holds them equal).
TRAIN_DEFAULTS = {
    "placement": "peft", "layer": -LAYERS_FROM_TOP, "target_modules": list(MLP_MODULES),
    "method": "sft", "lr": 0.03, "lr_search": True, "until": "converged", "end_token": True,
}  # fmt: skip


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
    progress: bool = False,
    loaded: LoadedModel | None = None,
    **settings,
) -> ProbeResult:
    """Train ``data`` (JSONL, CSV or Parquet records, or plain text) into an adapter.

    Returns the measurements: ``certified``, ``items`` (each with its exact match, stubborn tokens
    and where greedy decoding first diverges), ``steps``, ``seconds`` and the rest of
    ``ProbeResult``; ``result.adapter`` is the trained adapter. With ``out``, the adapter (PEFT's
    format: ``PeftModel.from_pretrained`` loads it), its settings and recall.json are saved in
    that new folder. ``loaded`` reuses a model already loaded (the adapter is then attached to it).
    """
    check_input_file(data, "no such data file (give a JSONL, CSV, Parquet or text file)")
    config = train_config(data, **settings)
    check_outputs(folders=[("out", out)], inputs=[("data", data)])
    return run_training(config, out=out, progress=progress, loaded=loaded)


def run_training(
    config: ProbeConfig, *, out: str | Path | None = None, progress: bool = False, loaded: LoadedModel | None = None
) -> ProbeResult:
    """Train ``config`` (settings already checked, outputs too) and save the adapter in ``out``."""
    from memlaw.probe.run import run_probe

    result = run_probe(config, loaded, progress=progress)
    if out is not None:
        result.save_adapter(out, config)
    return result
