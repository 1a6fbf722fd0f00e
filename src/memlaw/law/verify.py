"""Plans checked by training: the probe settings a law was fitted with, applied to a user's file.

A law is valid for its own budget only (placement, method, learning rate, stopping rule), so a
plan is verified by training exactly as the law's probes trained, at the planned rank, on the
user's file; only the data and the rank differ.
"""

from __future__ import annotations

from memlaw.errors import MemlawInputError
from memlaw.law.fit import MemoryLaw
from memlaw.law.plan import LawPlan
from memlaw.law.points import PROVENANCE
from memlaw.law.state import NOT_SETTINGS
from memlaw.law.track import VerifiedPlan
from memlaw.models.loading import LoadedModel, bf16_autocast_available, resolve_device
from memlaw.probe.config import ProbeConfig

#: What encoding a file needs from the law (the content pass); the rest is how to train.
ENCODING = ("model", "gguf_file", "prompt_format", "system_prompt")
#: Settings whose one value can itself be a list, so a list does not mean "several values".
LIST_VALUED = ("layer", "target_modules")


def law_config(
    law: MemoryLaw, data: str, *, fields: list[str] | None = None, rank: int | None = None, **data_settings
) -> ProbeConfig:
    """The probe settings of ``law``'s points for ``data`` (and ``data_settings`` such as a
    generator's length): only the encoding without ``rank``, every recorded setting (the law's
    budget) with it."""
    provenance = law.provenance_
    names = ENCODING if rank is None else [name for name in PROVENANCE if name not in NOT_SETTINGS]
    settings: dict = {"data": data, "fields": fields, **data_settings}
    for name in names:
        if name not in provenance:  # a law fitted before memlaw recorded it: the default
            continue
        value = provenance.get(name)  # None is a value here: no system message
        if isinstance(value, list) and name not in LIST_VALUED:
            raise MemlawInputError(f"the law was fitted on several values of {name} ({value}): fit one law per {name}")
        settings[name] = value
    if rank is not None:
        settings["rank"] = rank
        if settings.get("autocast") and not bf16_autocast_available(resolve_device("auto")):
            settings["autocast"] = False  # the caller says so (see ``autocast_note``)
    return ProbeConfig(**settings)


def autocast_note(law: MemoryLaw, config: ProbeConfig) -> str | None:
    """Why a verification trains in another precision than the law's probes, if it does."""
    if law.provenance_.get("autocast") and not config.autocast:
        return (
            "the law's probes trained under bf16 autocast, which this machine lacks: verifying in float32 "
            "(precision moved converged losses by up to 0.28 nats in memlaw's measurements)"
        )
    return None


def verify_plan(
    plan: LawPlan, config: ProbeConfig, *, law_name: str, loaded: LoadedModel | None = None, progress: bool = False
) -> VerifiedPlan:
    """Train ``config`` (the law's budget at the planned rank: ``law_config``) and measure the outcome."""
    from memlaw.probe.run import run_probe

    result = run_probe(config, loaded, progress=progress)
    if result.adapter is not None:
        result.adapter.remove()  # give the shared model back untouched
    return VerifiedPlan(
        model=config.model, law=law_name, data=config.data, rank=plan.rank, length=result.length,
        initial_loss=result.initial_loss, predicted_final_loss=plan.predicted_final_loss,
        final_loss=result.final_loss, certified=result.certified, exact_match=result.exact_match,
        predicted_steps=None if plan.predicted_steps is None else plan.predicted_steps[0], steps=result.steps,
        predicted_seconds=plan.predicted_seconds, seconds=result.seconds, placement=config.placement,
    )  # fmt: skip
