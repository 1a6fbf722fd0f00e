"""MemFT-OT inside TRL's SFTTrainer (prompt/completion data, completion-only loss).

    pip install "memlaw[hf]"
    python examples/hf/trl_sft_memft.py                      # the default model (SmolLM2-135M-Instruct)
    python examples/hf/trl_sft_memft.py --model PATH --steps 5

``memft_trainer(SFTTrainer)`` adds MemFT's global normalisation to TRL's trainer; the loss is
given as ``memft_loss=`` (TRL 1.x deprecates ``compute_loss_func``, which costs an extra forward
per step). TRL's own entropy and token-accuracy metrics are not logged with it;
``MemFTCallback`` logs MemFT's.
"""

from __future__ import annotations

import argparse

import torch
from datasets import Dataset
from peft import LoraConfig
from trl import SFTConfig, SFTTrainer

from memlaw.data import phonebook_items
from memlaw.hf import MemFTCallback, MemFTLoss, memft_trainer
from memlaw.models import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--items", type=int, default=8)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--log-every", type=int, default=10, help="steps between log lines")
    parser.add_argument("--out", default="runs/trl-sft-memft")
    args = parser.parse_args()

    loaded = load_model(args.model, device="cpu")
    rows = [
        {"prompt": f"The phone number of {item.key} is", "completion": f" {item.value}"}
        for item in phonebook_items(args.items, seed=0)
    ]
    loss = MemFTLoss(threshold=0.5, fallback="sft")
    config = SFTConfig(
        output_dir=args.out, per_device_train_batch_size=2, gradient_accumulation_steps=2, max_steps=args.steps,
        learning_rate=1e-2, logging_steps=args.log_every, report_to="none", save_strategy="no", max_length=128,
        use_cpu=not torch.cuda.is_available(),
    )  # fmt: skip
    layer = 20 if loaded.model.config.num_hidden_layers > 20 else 0
    trainer = memft_trainer(SFTTrainer)(
        model=loaded.model, args=config, train_dataset=Dataset.from_list(rows), processing_class=loaded.tokenizer,
        peft_config=LoraConfig(r=8, lora_alpha=8, target_modules=["down_proj"], layers_to_transform=[layer]),
        memft_loss=loss, callbacks=[MemFTCallback(loss)],
    )  # fmt: skip
    trainer.train()
    trainer.model.save_pretrained(args.out)
    print(f"adapter (PEFT format): {args.out}")


if __name__ == "__main__":
    main()
