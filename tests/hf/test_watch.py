"""MemorisationCallback in a real transformers.Trainer on a tiny Llama with a PEFT LoRA: the plan
at train start, the logged measurements, the stop at certification and recall.json."""

import json
import math

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import Trainer, TrainingArguments

from memlaw.data import MemoryItem
from memlaw.hf import MemorisationCallback, collate_rows, supervised_rows
from memlaw.law import LawPoints, MemoryLaw
from memlaw.models import build_tiny_model

MODULES = ["down_proj", "q_proj", "v_proj"]
ITEMS = [MemoryItem("Ada", "7381"), MemoryItem("Bo", "52-9"), MemoryItem("Cy", "x0q")]


def small_law(modules=MODULES) -> MemoryLaw:
    """A law for this adapter that holds little: ΔL = 0.5·r^0.5·ℓ^−0.1, as if calibrated on it."""
    rank, length = (a.ravel().astype(float) for a in np.meshgrid([1, 2, 4, 8], [10, 20, 40, 80]))
    delta = 0.5 * rank**0.5 * length**-0.1
    provenance = {"placement": "peft", "target_modules": modules, "layer": "all", "model": "tiny"}
    return MemoryLaw(bootstrap=0).fit_points(
        LawPoints(rank, length, delta, 11.0 - delta, initial_loss=np.full_like(rank, 11.0), provenance=provenance)
    )


def train(tmp_path, tokenizer, watch_options, max_steps=300):
    torch.manual_seed(0)
    model = build_tiny_model(tokenizer).model
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=16, target_modules=MODULES))
    rows = supervised_rows(ITEMS, tokenizer)
    watch = MemorisationCallback(rows, **watch_options)
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"), per_device_train_batch_size=4, max_steps=max_steps, learning_rate=2e-2,
        lr_scheduler_type="constant", report_to="none", disable_tqdm=True, save_strategy="no", use_cpu=True,
        remove_unused_columns=False, logging_steps=1000,
    )  # fmt: skip
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collate_rows, callbacks=[watch])
    trainer.train()
    return model, rows, watch, trainer


def test_it_logs_memorisation_stops_at_certification_and_writes_recall_json(tmp_path, tokenizer):
    model, rows, watch, trainer = train(tmp_path, tokenizer, {"every": 5})
    steps = trainer.state.global_step
    assert watch.certified_step == steps < 300 and steps % 5 == 0
    logged = [entry for entry in trainer.state.log_history if "memorisation/stubborn_tokens" in entry]
    assert [entry["step"] for entry in logged] == list(range(5, steps + 1, 5))  # every 5 steps, not only at 1000
    assert logged[-1]["memorisation/stubborn_tokens"] == 0 and logged[-1]["memorisation/certified_items"] == 3
    assert logged[0]["memorisation/stubborn_tokens"] > 0
    recall = json.loads((tmp_path / "run" / "recall.json").read_text())
    assert recall["certified"] and recall["certified_step"] == steps and recall["plan"] is None
    # the report agrees with a clean forward of the trained model, token by token
    batch = collate_rows(rows)
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    for row, item in enumerate(recall["items"]):
        targets = batch["labels"][row, 1:]
        keep = targets != -100
        probs = torch.softmax(logits[row, :-1][keep], -1).gather(1, targets[keep][:, None])[:, 0]
        assert item["token_probs"] == pytest.approx(probs.tolist(), abs=1e-5)
        assert item["certified"] and min(item["token_probs"]) > 0.5
    assert recall["length"] == sum(int((r["labels"] != -100).sum()) for r in rows)
    assert recall["final_loss"] < math.log(2) < recall["initial_loss"]


def test_without_stop_it_trains_on_and_records_when_it_certified(tmp_path, tokenizer):
    _, _, watch, trainer = train(tmp_path, tokenizer, {"every": 5, "stop": False}, max_steps=120)
    assert trainer.state.global_step == 120 and watch.certified_step is not None and watch.certified_step < 120


def test_a_law_for_the_adapter_plans_and_warns_when_the_rank_is_too_small(tmp_path, tokenizer):
    with pytest.warns(UserWarning, match=r"rank 16 is predicted too small for these 3 items .* plans rank \d+"):
        _, rows, watch, _ = train(tmp_path, tokenizer, {"every": 5, "law": small_law()}, max_steps=5)
    tokens = sum(int((r["labels"] != -100).sum()) for r in rows)
    assert watch.plan.rank > 16 and watch.plan.length == tokens
    assert watch.plan.prediction.initial_loss == pytest.approx(watch.initial_loss)
    assert json.loads((tmp_path / "run" / "recall.json").read_text())["plan"]["rank"] == watch.plan.rank


def test_a_law_for_another_adapter_is_named_and_training_goes_on(tmp_path, tokenizer):
    with pytest.warns(UserWarning, match="no plan: .* was calibrated on PEFT LoRA on gate_proj"):
        _, _, watch, trainer = train(
            tmp_path, tokenizer, {"law": small_law(["gate_proj", "up_proj"]), "every": 5}, max_steps=5
        )
    assert watch.plan is None and trainer.state.global_step == 5
