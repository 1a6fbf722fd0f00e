"""``MemorisationCallback``: memlaw's plan, certification and recall report inside any Trainer.

For a ``transformers.Trainer`` or TRL's ``SFTTrainer`` training a PEFT LoRA on memory items
(rows as ``supervised_rows`` makes them). It works with any loss, SFT or MemFT:

- at train start, where a law exists for the adapter being trained, it plans for the items
  (their answer tokens and initial loss, measured by the model before the first step) and
  warns when the configured rank is predicted too small, naming the rank needed;
- every ``every`` steps it measures the items under teacher forcing without dropout, and logs
  the share of answer tokens at p > 0.5, the stubborn tokens (p <= 0.5) and the certified
  items (``memorisation/...`` in the logs, the progress bar and ``log_history``);
- at certification (every token at p > 0.5) it stops training, when ``stop``;
- at the end it writes ``recall.json`` (per item: each token's probability, the stubborn
  positions) into ``out`` (default: the Trainer's ``output_dir``), beside the adapter.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import TrainerCallback

from memlaw.constants import CERTIFY_LOSS
from memlaw.hf.data import collate_rows
from memlaw.hf.loss import shifted_token_losses
from memlaw.io import write_json_atomic


class MemorisationCallback(TrainerCallback):
    """Watches verbatim memorisation of ``rows`` (``{"input_ids", "labels"}`` each, labels -100
    on the prompt) while a Trainer trains; ``law`` (a model name with a calibrated law, a law
    file or a ``MemoryLaw``; None: no plan) is what the adapter is planned with."""

    def __init__(
        self,
        rows: Sequence[dict],
        *,
        every: int = 10,
        stop: bool = True,
        law=None,
        out: str | Path | None = None,
        batch_size: int = 8,
    ):
        if every < 1:
            raise ValueError(f"every must be at least 1 step, got {every}")
        self.rows, self.every, self.stop, self.law = list(rows), every, stop, law
        self.out, self.batch_size = out, batch_size
        self.plan = None  # memlaw.Plan for the items, when a law was found for the adapter
        self.plan_note: str | None = None  # why there is none
        self.initial_loss: float | None = None
        self.certified_step: int | None = None
        self.last: dict | None = None  # the latest measurement
        self._unlogged = False

    # -- measuring ----------------------------------------------------------------------------
    @torch.no_grad()
    def measure(self, model: torch.nn.Module) -> dict:
        """Each row's per-token probabilities under teacher forcing, in eval mode (no dropout)."""
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        probs, losses = [], []
        try:
            for start in range(0, len(self.rows), self.batch_size):
                batch = {k: v.to(device) for k, v in collate_rows(self.rows[start : start + self.batch_size]).items()}
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                tokens = shifted_token_losses(logits, batch["labels"])
                for row in range(len(batch["labels"])):
                    mine = tokens.losses[tokens.item_index == row].float().cpu()
                    losses.append(mine)
                    probs.append(torch.exp(-mine))
        finally:
            model.train(was_training)
        every_loss = torch.cat(losses)
        stubborn = int((every_loss >= CERTIFY_LOSS).sum())
        return {
            "loss": float(every_loss.mean()),
            "tokens": len(every_loss),
            "above_half": 1.0 - stubborn / len(every_loss),
            "stubborn": stubborn,
            "certified_items": sum(bool((p > 0.5).all()) for p in probs),
            "token_probs": [p.tolist() for p in probs],
        }

    # -- the Trainer's events -------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        first = self.measure(model)
        self.initial_loss, self.last = first["loss"], first
        if self.law is not None:
            self._plan(model, first)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every:
            return
        self.last, self._unlogged = self.measure(model), True
        control.should_log = True
        if self.last["stubborn"] == 0 and self.certified_step is None:
            self.certified_step = state.global_step
            control.should_training_stop = self.stop

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or not self._unlogged:
            return
        extra = {
            "memorisation/above_half": self.last["above_half"],
            "memorisation/stubborn_tokens": self.last["stubborn"],
            "memorisation/certified_items": self.last["certified_items"],
        }
        logs.update(extra)  # the progress bar prints after this callback (the Trainer adds it last)
        if state.log_history:
            state.log_history[-1].update(extra)
        self._unlogged = False

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.last = self.measure(model)
        if self.last["stubborn"] == 0 and self.certified_step is None:
            self.certified_step = state.global_step
        folder = Path(self.out or args.output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(folder / "recall.json", self.report(state.global_step))

    def report(self, steps: int) -> dict:
        """recall.json: the outcome and, per item, each answer token's probability."""
        last = self.last
        return {
            "certified": last["stubborn"] == 0,
            "certified_step": self.certified_step,
            "steps": steps,
            "initial_loss": self.initial_loss,
            "final_loss": last["loss"],
            "length": last["tokens"],
            "frac_above_half": last["above_half"],
            "stubborn_tokens": last["stubborn"],
            "items": [
                {
                    "index": index,
                    "certified": all(p > 0.5 for p in probs),
                    "token_probs": probs,
                    "stubborn_positions": [i for i, p in enumerate(probs) if p <= 0.5],
                }
                for index, probs in enumerate(last["token_probs"])
            ],
            "plan": None if self.plan is None else self.plan.to_dict(),
            "plan_note": self.plan_note,
        }

    # -- planning -----------------------------------------------------------------------------
    def _plan(self, model: torch.nn.Module, first: dict) -> None:
        """Plan for the items with the law, if it is the adapter's; warn when the rank is too small."""
        from memlaw.api.plan import plan as plan_adapter
        from memlaw.errors import MemlawInputError

        config = next(iter(getattr(model, "peft_config", {}).values()), None)
        if config is None or not isinstance(getattr(config, "r", None), int):
            self.plan_note = "not a PEFT LoRA model: nothing planned"
            return
        layers = config.layers_to_transform
        adapter = {
            "target_modules": sorted(config.target_modules),
            "layer": "all" if layers is None else ",".join(map(str, [layers] if isinstance(layers, int) else layers)),
        }
        law = {"model": self.law} if isinstance(self.law, str) and not self.law.endswith(".json") else {"law": self.law}
        try:
            self.plan = plan_adapter(length=first["tokens"], initial_loss=first["loss"], **law, **adapter)
        except MemlawInputError as err:  # no law for this adapter: say so once, and train on
            self.plan_note = f"no plan: {err}"
            warnings.warn(f"memlaw: {self.plan_note}", stacklevel=2)
            return
        if self.plan.rank > config.r:
            warnings.warn(
                f"memlaw: rank {config.r} is predicted too small for these {len(self.rows)} items "
                f"({first['tokens']} answer tokens at {first['loss']:.3g} nats/token): the law plans rank "
                f"{self.plan.rank}",
                stacklevel=2,
            )
