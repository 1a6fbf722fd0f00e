"""ProbeResult: the measurements of one probe, and its JSON form (docs/probe-result.md)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from memlaw._version import __version__
from memlaw.constants import CERTIFY_LOSS
from memlaw.data.encoding import EncodedData, item_record
from memlaw.io import write_dir_atomic, write_json_atomic
from memlaw.measure.recall import RecallMeasurement
from memlaw.placements import Adapter
from memlaw.probe.config import ProbeConfig
from memlaw.training.trainer import TrainLog

SCHEMA_VERSION = 1


@dataclass
class ProbeResult:
    """Measurements of one probe. Losses are mean nats per answer token."""

    config: dict[str, Any]
    placement: dict[str, Any]
    length: int
    num_items: int
    trainable_params: int
    initial_loss: float
    final_loss: float
    delta_loss: float
    initial_frac_above_half: float
    frac_above_half: float
    initial_argmax_accuracy: float
    argmax_accuracy: float
    certified: bool
    certified_step: int | None
    exact_match: float
    token_accuracy: float
    first_error: dict[str, int] | None
    steps: int
    stopped_early: bool
    #: Why training ended: budget, certified, converged or max_steps (docs/convergence.md).
    stop_reason: str
    #: Ended by the budget or the cap while the loss was still falling (by ``loss_slope``).
    budget_limited: bool
    #: Slope of the loss over the last plateau_steps steps, nats per step at the full learning rate.
    loss_slope: float
    loss_curve: list[float]
    items: list[dict[str, Any]]
    seconds: float
    memlaw_version: str
    #: Adapters trained together in this probe's pass (1: alone), as ``run_probes`` chose.
    stacked_copies: int = 1
    #: For a plateau: the measure still improving last, "stubborn excess" or "mean loss".
    plateau_measure: str | None = None
    #: Slope of the stubborn excess (nats summed over tokens at p <= 0.5) at the end, per step.
    excess_slope: float = 0.0
    #: The learning-rate search before training (``lr_search``): the rate kept, the rates tried
    #: with their scores (mean loss of their last steps) and the steps each trained.
    lr_choice: dict[str, Any] | None = None
    #: Steps trained before the finishing phase (``finish_stubborn``) began; None when it did not.
    finish_step: int | None = None
    #: For a cycle that added content to a saved adapter: what it did (``memlaw.memory.CycleReport``).
    cycle: dict[str, Any] | None = None
    schema_version: int = SCHEMA_VERSION
    adapter: Adapter | None = field(default=None, repr=False, compare=False)
    #: The items as trained, which a saved adapter keeps as its item store (``save_adapter``).
    data: EncodedData | None = field(default=None, repr=False, compare=False)

    @property
    def trained_lr(self) -> float:
        """The rate training ran at: the searched one under ``lr_search``, else the configured one."""
        return self.config["lr"]

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("adapter", "data")}

    def save_json(self, path: str | Path) -> None:
        write_json_atomic(path, self.to_dict())

    def save_adapter(
        self, folder: str | Path, config: ProbeConfig, *, cycles: list[dict[str, Any]],
        item_cycles: list[int] | None = None,
    ) -> None:  # fmt: skip
        """The adapter (PEFT format for PEFT placements), its settings and these measurements
        (recall.json) in the new folder ``folder``, atomically.

        recall.json is also the adapter's item store: each item with its source record, its token
        ids, whether it is certified and the cycle that added it (``item_cycles``; all 1 for a
        first training), and ``cycles`` says what each training cycle did (``memlaw.memory``)."""
        adapter, data = self.adapter, self.data
        if adapter is None or data is None:
            raise ValueError("this result holds no adapter to save (it was removed or never kept)")
        item_cycles = item_cycles or [1] * len(self.items)
        recall = self.to_dict()
        recall["items"] = [
            {**report, **item_record(item), "certified": not report["stubborn_positions"], "cycle": cycle}
            for report, item, cycle in zip(self.items, data.items, item_cycles, strict=True)
        ]
        recall["cycles"] = cycles

        def fill(staging: Path) -> None:
            adapter.save_pretrained(staging)
            write_json_atomic(staging / "probe_config.json", asdict(config))
            write_json_atomic(staging / "recall.json", recall)

        write_dir_atomic(folder, fill)

    def summary(self) -> str:
        lines = [
            (
                f"ℓ = {self.length} answer tokens in {self.num_items} item(s); {self.placement['placement']} rank "
                f"{self.placement['rank']} ({self.trainable_params:,} trainable parameters); {self.steps} steps"
            ),
            (
                f"loss: initial {self.initial_loss:.4f} -> final {self.final_loss:.4f} nats/token "
                f"(ΔL = {self.delta_loss:.4f})"
            ),
            (
                f"tokens with p > 0.5: {self.initial_frac_above_half:.1%} -> {self.frac_above_half:.1%}; "
                f"teacher-forced argmax accuracy {self.argmax_accuracy:.1%}"
            ),
            f"greedy recall: exact match {self.exact_match:.1%} of items, token accuracy {self.token_accuracy:.1%}",
        ]
        ended = {
            "budget": "the end of its budget", "certified": "certification", "converged": "a plateau of the loss",
            "max_steps": "the cap on steps",
        }[self.stop_reason]  # fmt: skip
        if self.plateau_measure is not None:
            ended += f" ({self.plateau_measure})"
        if self.finish_step is not None:
            ended += f" after finishing the stubborn tokens with memft-ot from step {self.finish_step}"
        falling = "; still improving: budget-limited" if self.budget_limited else ""
        lines.append(
            f"training ended at {ended} (loss slope {self.loss_slope:.2g}, stubborn excess slope "
            f"{self.excess_slope:.2g} nats/step{falling})"
        )
        if self.certified:
            lines.append(f"certified: every token has p > 0.5 (first certified at step {self.certified_step})")
        else:
            stubborn = sum(len(item["stubborn_positions"]) for item in self.items)
            lines.append(f"not certified: {stubborn} stubborn token(s) with p <= 0.5")
        if self.first_error is not None:
            lines.append(
                f"first greedy error: item {self.first_error['item']}, answer token {self.first_error['position']}"
            )
        return "\n".join(lines)


def build_result(
    config: ProbeConfig,
    adapter: Adapter,
    copy: int,
    data: EncodedData,
    before: RecallMeasurement,
    after: RecallMeasurement,
    log: TrainLog,
    seconds: float,
    tokenizer=None,
    stacked_copies: int = 1,
    *,
    lr_choice: dict[str, Any] | None = None,
) -> ProbeResult:
    assert after.greedy is not None
    return ProbeResult(
        config=asdict(config),
        placement=adapter.describe(copy),
        length=data.length,
        num_items=len(data.items),
        trainable_params=adapter.copy_trainable_params(copy),
        initial_loss=before.loss,
        final_loss=after.loss,
        delta_loss=before.loss - after.loss,
        initial_frac_above_half=before.frac_above_half,
        frac_above_half=after.frac_above_half,
        initial_argmax_accuracy=before.argmax_accuracy,
        argmax_accuracy=after.argmax_accuracy,
        certified=after.certified,
        certified_step=certified_step(log, after, config),
        exact_match=after.greedy.exact_match,
        token_accuracy=after.greedy.token_accuracy(after.lengths),
        first_error=after.greedy.first_error,
        steps=log.steps,
        stopped_early=log.stopped_early,
        stop_reason=log.stop_reason,
        budget_limited=log.budget_limited,
        loss_slope=log.loss_slope,
        loss_curve=log.loss_curve,
        items=item_reports(data, before, after, tokenizer),
        seconds=seconds,
        memlaw_version=__version__,
        stacked_copies=stacked_copies,
        plateau_measure=log.plateau_measure,
        excess_slope=log.excess_slope,
        lr_choice=lr_choice,
        finish_step=log.finish_step,
        adapter=adapter,
        data=data,
    )


def certified_step(log: TrainLog, after: RecallMeasurement, config: ProbeConfig) -> int | None:
    """The trainer's first certified step; the final measurement is the last (clean) check."""
    if not after.certified or not config.check_every:
        return None
    return log.steps if log.certified_step is None else log.certified_step


#: Answer tokens shown on each side of a greedy divergence.
DIVERGENCE_CONTEXT = 8


def divergence(answer: list[int], decoded: list[int], position: int | None, tokenizer) -> dict[str, Any] | None:
    """Where greedy decoding leaves the answer: the text before it, what was due, what came out."""
    if position is None or tokenizer is None:
        return None
    start, end = max(0, position - DIVERGENCE_CONTEXT), position + DIVERGENCE_CONTEXT
    return {
        "position": position,
        "before": tokenizer.decode(answer[start:position]),
        "expected": tokenizer.decode(answer[position:end]),
        "decoded": tokenizer.decode(decoded[position:end]),
    }


def item_reports(
    data: EncodedData, before: RecallMeasurement, after: RecallMeasurement, tokenizer=None
) -> list[dict[str, Any]]:
    assert after.greedy is not None
    reports = []
    for index, (item, l0, l1) in enumerate(zip(data.items, before.item_losses(), after.item_losses(), strict=True)):
        p0, p1 = torch.exp(-l0).tolist(), torch.exp(-l1).tolist()
        reports.append(
            {
                "key": item.key,
                "length": len(item.answer_ids),
                "end_tokens": len(item.end_ids),  # supervised after the answer, last in token_probs
                "exact_match": after.greedy.item_exact[index],
                "first_error": after.greedy.item_first_error[index],
                "divergence": divergence(
                    list(item.supervised_ids),
                    after.greedy.item_decoded[index],
                    after.greedy.item_first_error[index],
                    tokenizer,
                ),
                "token_accuracy": after.greedy.item_matched[index] / len(item.supervised_ids),
                "min_prob": min(p1),
                # the answer's loss under the base model (end token not counted), unrounded
                "initial_nats": float(l0[: len(item.answer_ids)].sum()),
                "stubborn_positions": torch.nonzero(l1 >= CERTIFY_LOSS).flatten().tolist(),
                "initial_token_probs": [round(p, 6) for p in p0],
                "token_probs": [round(p, 6) for p in p1],
            }
        )
    return reports
