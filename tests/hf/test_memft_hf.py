"""MemFT inside transformers.Trainer and TRL's SFTTrainer, on a tiny Llama with a PEFT LoRA."""

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from torch.utils.data import Dataset
from transformers import Trainer, TrainerCallback, TrainingArguments

from memlaw.hf import MemFTCallback, MemFTLoss, MemFTTrainer, collate_rows
from memlaw.models import build_tiny_model

LENGTHS = [(5, 3), (9, 12), (4, 6), (7, 20)]  # (prompt, answer) tokens: unequal on purpose


class Sequences(Dataset):
    """Prompts with unsupervised labels (-100) followed by supervised answers."""

    def __init__(self, vocab_size: int):
        generator = torch.Generator().manual_seed(0)
        self.rows = []
        for prompt, answer in LENGTHS:
            ids = torch.randint(100, vocab_size, (prompt + answer,), generator=generator)
            labels = ids.clone()
            labels[:prompt] = -100
            self.rows.append({"input_ids": ids, "labels": labels})

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        return self.rows[index]


def lora_model(tokenizer):
    model = build_tiny_model(tokenizer).model
    model.requires_grad_(False)
    torch.manual_seed(0)  # the same LoRA initialisation in every run
    return get_peft_model(
        model, LoraConfig(r=4, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )


class GradientCapture(TrainerCallback):
    def __init__(self, model):
        self.model, self.grads = model, None

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.grads = {n: p.grad.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}


def median_threshold(model, data):
    """A threshold probability with about half of the answer tokens below it (a random model's p are all tiny)."""
    batch = collate_rows(list(data))
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    targets = batch["labels"][:, 1:]
    losses = F.cross_entropy(logits[:, :-1][targets != -100], targets[targets != -100], reduction="none")
    return math.exp(-float(losses.median()))


def one_step_gradients(tmp_path, tokenizer, batch, accumulation, trainer_class, threshold):
    model = lora_model(tokenizer)
    data = Sequences(model.config.vocab_size)
    loss = MemFTLoss(threshold=threshold)
    capture = GradientCapture(model)
    args = TrainingArguments(
        output_dir=str(tmp_path / f"run-{batch}x{accumulation}"), per_device_train_batch_size=batch,
        gradient_accumulation_steps=accumulation, max_steps=1, learning_rate=1e-3, max_grad_norm=0.0,
        report_to="none", disable_tqdm=True, save_strategy="no", use_cpu=True, remove_unused_columns=False,
        logging_steps=1,
    )  # fmt: skip
    loss_keyword = "memft_loss" if issubclass(trainer_class, MemFTTrainer) else "compute_loss_func"
    trainer = trainer_class(
        model=model, args=args, train_dataset=data, data_collator=collate_rows, **{loss_keyword: loss},
        callbacks=[capture, MemFTCallback(loss)],
    )  # fmt: skip
    trainer.train()
    return capture.grads, trainer.state.log_history, data


def test_accumulating_4x1_gives_the_gradient_of_one_batch_of_4(tmp_path, tokenizer):
    threshold = median_threshold(lora_model(tokenizer), Sequences(49152))
    whole, log, data = one_step_gradients(tmp_path, tokenizer, 4, 1, MemFTTrainer, threshold)
    accumulated, *_ = one_step_gradients(tmp_path, tokenizer, 1, 4, MemFTTrainer, threshold)
    for name, grad in whole.items():
        torch.testing.assert_close(accumulated[name], grad, rtol=1e-4, atol=1e-7)

    # and both are the OT gradient written by hand: the mean loss over the tokens below the threshold
    fresh = lora_model(tokenizer)
    batch = collate_rows(list(data))
    logits = fresh(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    targets = batch["labels"][:, 1:]
    losses = F.cross_entropy(logits[:, :-1][targets != -100], targets[targets != -100], reduction="none")
    active = losses.detach() > -math.log(threshold)
    assert 0 < int(active.sum()) < len(active)
    losses[active].mean().backward()
    for name, parameter in fresh.named_parameters():
        if parameter.requires_grad:
            torch.testing.assert_close(whole[name], parameter.grad, rtol=1e-4, atol=1e-7)

    # the callback logged the share of tokens below the threshold in the training forward
    record = next(entry for entry in log if "memft/sub_threshold_share" in entry)
    assert record["memft/sub_threshold_share"] == pytest.approx(float(active.float().mean()), abs=1e-6)
    assert record["memft/certified_items"] == 0.0


def test_without_the_global_count_accumulation_changes_the_gradient(tmp_path, tokenizer):
    """The plain Trainer normalises by supervised tokens, not active ones: a different scale, so the
    MemFT trainer's pre-pass is what makes the OT mean exact (this is the failure it prevents)."""
    threshold = median_threshold(lora_model(tokenizer), Sequences(49152))
    exact, *_ = one_step_gradients(tmp_path, tokenizer, 1, 4, MemFTTrainer, threshold)
    plain, *_ = one_step_gradients(tmp_path, tokenizer, 1, 4, Trainer, threshold)
    name = next(iter(exact))
    assert not torch.allclose(exact[name], plain[name], rtol=1e-3)
    ratio = (exact[name] / plain[name])[plain[name].abs() > 1e-8]
    assert torch.allclose(ratio, ratio.median(), rtol=1e-2)  # same direction, another scale


def test_trl_sft_trainer_trains_with_the_memft_loss(tmp_path, tokenizer):
    trl = pytest.importorskip("trl")
    from datasets import Dataset as HFDataset

    from memlaw.hf import memft_trainer

    model = lora_model(tokenizer)
    rows = [{"prompt": f"Phone of person {i}:", "completion": f" {5550100 + 37 * i}"} for i in range(4)]
    loss = MemFTLoss()
    capture = GradientCapture(model)
    args = trl.SFTConfig(
        output_dir=str(tmp_path / "trl"), per_device_train_batch_size=2, gradient_accumulation_steps=2, max_steps=2,
        learning_rate=1e-2, report_to="none", disable_tqdm=True, save_strategy="no", use_cpu=True, logging_steps=1,
        max_length=64,
    )  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = memft_trainer(trl.SFTTrainer)(
            model=model, args=args, train_dataset=HFDataset.from_list(rows), processing_class=tokenizer,
            memft_loss=loss, callbacks=[capture, MemFTCallback(loss)],
        )  # fmt: skip
        before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        forwards = []
        hook = model.get_base_model().model.register_forward_hook(lambda *_: forwards.append(1))
        trainer.train()
        hook.remove()
    assert not [w for w in caught if "compute_loss_func" in str(w.message)], "TRL's deprecation warning was raised"
    # 2 optimizer steps × 2 micro-batches: one clean pre-pass forward and one training forward each, no more
    assert len(forwards) == 2 * 2 * 2
    assert capture.grads is not None and any(g.abs().sum() > 0 for g in capture.grads.values())
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters() if p.requires_grad)
    shares = [
        entry["memft/sub_threshold_share"]
        for entry in trainer.state.log_history
        if "memft/sub_threshold_share" in entry
    ]
    assert len(shares) == 2 and all(0 < share <= 1 for share in shares)


def test_the_memft_trainer_refuses_the_loss_as_compute_loss_func(tmp_path, tokenizer):
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    with pytest.raises(ValueError, match="memft_loss="):
        MemFTTrainer(model=lora_model(tokenizer), args=args, compute_loss_func=MemFTLoss())


def memorise_with_stop(tmp_path, tokenizer, epochs):
    model = build_tiny_model(tokenizer).model
    model.requires_grad_(False)
    torch.manual_seed(0)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    data = Sequences(model.config.vocab_size)
    data.rows = data.rows[:2]  # 15 answer tokens: well inside this adapter's capacity
    loss = MemFTLoss()
    stop = MemFTCallback(loss, stop=True, plateau_epochs=5)
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"), per_device_train_batch_size=4, num_train_epochs=epochs, learning_rate=2e-2,
        lr_scheduler_type="constant", report_to="none", disable_tqdm=True, save_strategy="no", use_cpu=True,
        remove_unused_columns=False, logging_steps=1,
    )  # fmt: skip
    trainer = MemFTTrainer(
        model=model, args=args, train_dataset=data, data_collator=collate_rows, memft_loss=loss, callbacks=[stop]
    )
    trainer.train()
    return model, data, stop, trainer.state.global_step


def test_the_callback_stops_the_trainer_at_certification(tmp_path, tokenizer):
    model, data, stop, steps = memorise_with_stop(tmp_path, tokenizer, epochs=400)
    assert stop.stop_reason == "certified" and steps < 400
    # the last epoch saw every answer token at p > 0.5: a clean pass after its update agrees
    batch = collate_rows(list(data))
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    targets = batch["labels"][:, 1:]
    losses = F.cross_entropy(logits[:, :-1][targets != -100], targets[targets != -100], reduction="none")
    assert float(losses.max()) < math.log(2)


def test_the_callback_stops_a_run_that_stopped_improving():
    from memlaw.hf.loss import MemFTLoss as Loss

    loss = Loss()
    stop = MemFTCallback(loss, stop=True, plateau_epochs=3)

    class Control:
        should_training_stop = False

    control = Control()
    # three tokens stuck 0.3 nats above ln 2, then nothing moves: three stale epochs end it
    for epoch in range(5):
        loss.epoch = {"tokens": 40, "loss": 4.0, "stubborn": 3, "excess": 0.9}
        stop.on_epoch_end(None, None, control)
        assert control.should_training_stop == (epoch == 3)
        if control.should_training_stop:
            break
    assert stop.stop_reason == "converged (stubborn excess)"
