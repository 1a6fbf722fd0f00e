"""memlaw's MemorisationCallback in a plain transformers.Trainer: plan, watch, certify, report.

    python examples/hf/callback.py                            # the default model, examples/contacts.jsonl
    python examples/hf/callback.py --rank 1 --model PATH --law none

The Trainer trains a PEFT LoRA on the MLP of the layer two below the top (the adapter memlaw's
packaged law was calibrated on) with its own loss. The callback plans the rank for the
contacts at train start and warns if --rank is too small; every --every steps it logs the
share of answer tokens at p > 0.5 and the stubborn ones; it stops the Trainer at
certification and writes recall.json beside the adapter.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import Trainer, TrainingArguments

from memlaw.data import load_items
from memlaw.hf import MemorisationCallback, collate_rows, supervised_rows
from memlaw.models import load_model

CONTACTS = Path(__file__).resolve().parents[1] / "contacts.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--data", default=str(CONTACTS), help="JSONL, CSV or Parquet records to memorise")
    parser.add_argument("--rank", type=int, default=1)
    parser.add_argument("--law", default="smollm2-135m-instruct", help="the law to plan with ('none': no plan)")
    parser.add_argument("--every", type=int, default=10, help="steps between measurements")
    parser.add_argument("--steps", type=int, default=600, help="the most steps the Trainer may take")
    parser.add_argument("--out", default="runs/hf-callback")
    args = parser.parse_args()

    loaded = load_model(args.model, device="cpu")
    depth = loaded.model.config.num_hidden_layers
    model = get_peft_model(
        loaded.model,
        LoraConfig(
            r=args.rank, lora_alpha=args.rank, target_modules=["gate_proj", "up_proj", "down_proj"],
            layers_to_transform=[max(0, depth - 2)],
        ),
    )  # fmt: skip
    rows = supervised_rows(load_items(args.data), loaded.tokenizer)
    watch = MemorisationCallback(rows, every=args.every, law=None if args.law == "none" else args.law)
    training = TrainingArguments(
        output_dir=args.out, per_device_train_batch_size=8, max_steps=args.steps, learning_rate=3e-2,
        lr_scheduler_type="constant", logging_steps=args.every, report_to="none", save_strategy="no",
        remove_unused_columns=False, use_cpu=not torch.cuda.is_available(),
    )  # fmt: skip
    trainer = Trainer(
        model=model, args=training, train_dataset=rows, callbacks=[watch],
        data_collator=lambda batch: collate_rows(batch, loaded.tokenizer.pad_token_id),
    )  # fmt: skip
    trainer.train()
    model.save_pretrained(args.out)
    if watch.plan is not None:
        print(f"planned rank {watch.plan.rank} for {watch.last['tokens']} answer tokens; trained rank {args.rank}")
    outcome = "certified" if watch.certified_step is not None else "not certified"
    print(
        f"{outcome} at step {watch.certified_step or trainer.state.global_step}: {watch.last['certified_items']}/"
        f"{len(rows)} items, {watch.last['above_half']:.1%} of tokens at p > 0.5; adapter and recall.json: {args.out}"
    )


if __name__ == "__main__":
    main()
