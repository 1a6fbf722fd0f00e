"""MemFT-OT inside a plain transformers.Trainer: a PEFT LoRA memorises phone numbers verbatim.

    python examples/hf/trainer_memft.py                      # the default model (SmolLM2-135M-Instruct)
    python examples/hf/trainer_memft.py --model PATH --steps 5

The loss trains only the answer tokens whose probability is still below 0.5; MemFTTrainer
normalises it over those tokens across every micro-batch of an optimizer step (and every
process), and MemFTCallback adds the share of such tokens and of certified items to the logs.
"""

from __future__ import annotations

import argparse

import torch
from peft import LoraConfig, get_peft_model
from transformers import TrainingArguments

from memlaw.data import phonebook_items
from memlaw.hf import MemFTCallback, MemFTLoss, MemFTTrainer, collate_rows, supervised_rows
from memlaw.models import load_model


def examples(tokenizer, count: int) -> list[dict[str, torch.Tensor]]:
    """Chat prompts unsupervised (-100); the number and the end of the assistant's turn supervised,
    so the adapter stops after the number."""
    return supervised_rows(phonebook_items(count, seed=0), tokenizer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--items", type=int, default=8)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--log-every", type=int, default=10, help="steps between log lines")
    parser.add_argument("--out", default="runs/hf-trainer-memft")
    args = parser.parse_args()

    loaded = load_model(args.model, device="cpu")
    model = get_peft_model(
        loaded.model,
        LoraConfig(
            r=8,
            lora_alpha=8,
            target_modules=["down_proj"],
            layers_to_transform=[20 if loaded.model.config.num_hidden_layers > 20 else 0],
        ),
    )
    loss = MemFTLoss(threshold=0.5, fallback="sft")
    training = TrainingArguments(
        output_dir=args.out, per_device_train_batch_size=2, gradient_accumulation_steps=2, max_steps=args.steps,
        learning_rate=1e-2, lr_scheduler_type="linear", logging_steps=args.log_every, report_to="none",
        save_strategy="no", remove_unused_columns=False, use_cpu=not torch.cuda.is_available(),
    )  # fmt: skip
    trainer = MemFTTrainer(
        model=model, args=training, train_dataset=examples(loaded.tokenizer, args.items),
        data_collator=lambda rows: collate_rows(rows, loaded.tokenizer.pad_token_id),
        memft_loss=loss, callbacks=[MemFTCallback(loss)],
    )  # fmt: skip
    trainer.train()
    model.save_pretrained(args.out)
    print(f"adapter (PEFT format): {args.out}")


if __name__ == "__main__":
    main()
