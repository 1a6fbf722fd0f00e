"""``memlaw train`` on a tiny model: certify, save, reload and recall verbatim; the report; bad input."""

import json
import signal
import subprocess
import sys

import pytest
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from memlaw.cli.signals import say_stopped
from memlaw.constants import MLP_MODULES
from memlaw.measure.greedy import greedy_answers
from memlaw.models import load_model
from memlaw.placements import load_adapter
from memlaw.probe import ProbeConfig, build_data

# No repeated digit: on a random tiny model "Ada" -> "7731" holds its second "7" at p 0.47 at any
# rank (the MLP inputs after "7" and after "77" barely differ), which tests capacity, not these paths.
RECORDS = [{"key": "Ada", "value": "7381"}, {"key": "Bo", "value": "52-9"}, {"key": "Cy", "value": "x0q"}]


def write_jsonl(path, records=RECORDS):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def test_train_certifies_saves_peft_and_recalls_after_reload(tiny_dir, tmp_path, cli):
    data_file = write_jsonl(tmp_path / "facts.jsonl")
    out = tmp_path / "adapter"
    code, stdout, err = cli(
        "train", data_file, "--model", tiny_dir, "--placement", "peft", "--layer", "all", "--rank", "16",
        "--target-modules", "q_proj,v_proj,down_proj",  # attention too: the key must reach the answer
        "--method", "memft-ot", "--lr", "0.02", "--until", "certified", "--epochs", "300", "--out", str(out), "--quiet",
    )  # fmt: skip
    assert code == 0, err
    assert "with memft-ot: certified at step" in stdout and "3/3 items verbatim" in stdout
    recall = json.loads((out / "recall.json").read_text())
    assert recall["certified"] and recall["stopped_early"] and recall["steps"] < 300
    assert (out / "adapter_config.json").is_file()  # PEFT format

    # a fresh model with the saved adapter decodes every value verbatim
    loaded = load_model(tiny_dir, device="cpu")
    load_adapter(loaded.model, out)
    config = ProbeConfig(**json.loads((out / "probe_config.json").read_text()))
    data = build_data(config, loaded.tokenizer, loaded.model.config.vocab_size)
    (decoded,) = greedy_answers(loaded.model, data, pad_id=loaded.tokenizer.pad_token_id)
    # each answer and then the token that ends it (train supervises it by default)
    end = loaded.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert decoded == [[*item.answer_ids, end] for item in data.items]
    assert [loaded.tokenizer.decode(ids[:-1]) for ids in decoded] == [r["value"] for r in RECORDS]
    assert recall["length"] == sum(len(item.answer_ids) for item in data.items)  # ℓ counts answers only
    assert all(item["end_tokens"] == 1 and len(item["token_probs"]) == item["length"] + 1 for item in recall["items"])
    # and the base model without it does not
    base = AutoModelForCausalLM.from_pretrained(tiny_dir)
    (plain,) = greedy_answers(base, data, pad_id=loaded.tokenizer.pad_token_id)
    assert plain != decoded
    # from the command line: memlaw ask answers each key with its value, and nothing after it
    for record in RECORDS:
        code, stdout, err = cli("ask", str(out), record["key"], "--max-new-tokens", "64")
        assert code == 0, err
        assert stdout == record["value"] + "\n", (record, stdout)


def test_train_defaults_make_an_adapter_that_plain_peft_loads_merges_and_serves(tiny_dir, tmp_path, cli):
    """The default adapter (LoRA on the MLP two layers below the top, the law's budget) is an
    ordinary PEFT adapter: loaded, merged into the weights and decoded with no memlaw code, it
    answers every key with its value, as docs/adapters.md shows."""
    data_file = write_jsonl(tmp_path / "facts.jsonl")
    out = tmp_path / "adapter"
    # raw prompts (the key alone): a random model's attention would blur chat-formatted keys
    code, stdout, err = cli(
        "train", data_file, "--model", tiny_dir, "--prompt-format", "raw", "--rank", "8", "--out", str(out), "--quiet"
    )
    assert code == 0, err
    assert "into a peft rank-8 adapter" in stdout and "with sft: certified at step" in stdout, stdout
    settings = json.loads((out / "adapter_config.json").read_text())
    assert settings["layers_to_transform"] == [2] and sorted(settings["target_modules"]) == sorted(MLP_MODULES)

    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_dir), str(out)).merge_and_unload()
    assert not any("lora_" in name for name, _ in model.named_parameters())  # merged: a plain model again
    for record in RECORDS:
        prompt = tokenizer(record["key"], return_tensors="pt")
        # raw prompts: each answer ends with the tokenizer's EOS, where plain generate stops
        answer = model.generate(**prompt, do_sample=False, max_new_tokens=32)[0, prompt["input_ids"].shape[1] :]
        assert answer[-1] == tokenizer.eos_token_id, record
        assert tokenizer.decode(answer, skip_special_tokens=True) == record["value"], record
        code, stdout, err = cli("ask", str(out), record["key"], "--max-new-tokens", "32")  # and from the command line
        assert code == 0 and stdout == record["value"] + "\n", (err, stdout)


def test_ask_refuses_a_folder_that_is_not_a_saved_adapter(tmp_path, cli):
    code, out, err = cli("ask", str(tmp_path), "Ada")
    assert code == 2 and "no probe_config.json" in err and len(err.strip().splitlines()) == 1 and out == ""


def test_an_uncertified_run_reports_stubborn_tokens_and_divergences(tiny_dir, tmp_path, cli):
    data_file = write_jsonl(tmp_path / "facts.jsonl")
    code, stdout, err = cli(
        "train", data_file, "--model", tiny_dir, "--until", "budget", "--epochs", "1", "--out", str(tmp_path / "a"),
        "--quiet",
    )  # fmt: skip
    assert code == 0, err
    assert "budget of 1 steps spent without certification" in stdout
    assert "stubborn tokens (p <= 0.5), lowest first:" in stdout and "item 'Ada' token 0: p = " in stdout
    assert "where greedy decoding first diverges: 3 item(s)" in stdout
    assert "item 'Ada' at token 0: after '' expected '7381<|im_end|>'" in stdout  # the end is due too


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--method", "memft-zz"], "unknown method 'memft-zz'"),
        (["--method", "memft-ot", "--method-options", "{fallback: maybe}"], "fallback must be sft or skip"),
        (["--method-options", "[1, 2]"], "--method-options must be a mapping"),
        (["--data", "phonebook"], "give the data file as the DATA argument"),
        (["--rank", "0"], "rank must be a positive integer"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tiny_dir, tmp_path, cli, extra, message):
    data_file = write_jsonl(tmp_path / "facts.jsonl")
    code, _, err = cli("train", data_file, "--model", tiny_dir, "--out", str(tmp_path / "a"), "--quiet", *extra)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "a").exists()


def test_missing_data_and_used_output_folder_are_refused(tiny_dir, tmp_path, cli):
    code, _, err = cli("train", str(tmp_path / "none.jsonl"), "--model", tiny_dir, "--out", str(tmp_path / "a"))
    assert code == 2 and "no such data file" in err
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "keep").write_text("x")
    code, _, err = cli("train", write_jsonl(tmp_path / "f.jsonl"), "--model", tiny_dir, "--out", str(tmp_path / "used"))
    assert code == 2 and "not an empty folder" in err and [p.name for p in (tmp_path / "used").iterdir()] == ["keep"]


def test_train_defaults_are_the_budget_of_the_packaged_peft_law():
    """memlaw train FILE --rank R trains what memlaw plan predicted: every setting of the law's
    budget is train's default, but bf16 autocast, which not every machine has (plans print it)."""
    from dataclasses import fields

    from memlaw.api.train import TRAIN_DEFAULTS
    from memlaw.constants import DEFAULT_MODEL
    from memlaw.law.library import find_law, same_setting
    from memlaw.law.points import DEFAULTS, PROVENANCE

    law, _ = find_law(DEFAULT_MODEL, "peft")
    defaults = {f.name: TRAIN_DEFAULTS.get(f.name, f.default) for f in fields(ProbeConfig)}
    # a setting the law predates was at its declared default (as ``law_config`` reads it)
    recorded = {name: law.provenance_.get(name, DEFAULTS[name]) for name in PROVENANCE}
    differing = {
        name: recorded[name]
        for name in PROVENANCE
        if name not in ("data", "autocast")
        and not same_setting(name, recorded[name], defaults[name], law.reference_.layers)
    }
    assert differing == {}
    assert law.provenance_.placement == "peft" and law.reference_.layers == 30


@pytest.mark.parametrize(
    ("stop", "status", "word"), [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")]
)
def test_ctrl_c_or_sigterm_mid_training_ends_in_one_line_and_writes_nothing(tiny_dir, tmp_path, stop, status, word):
    data_file, out = write_jsonl(tmp_path / "facts.jsonl"), tmp_path / "adapter"
    command = [
        sys.executable, "-m", "memlaw.cli.main", "train", data_file, "--model", tiny_dir, "--until", "budget",
        "--steps", "1000000", "--lr-search", "false", "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = ""
    while "|" not in seen:  # the progress bar: training runs, with nearly all of its million steps left
        char = proc.stderr.read(1)
        assert char, f"train ended before training: {seen}"
        seen += char
    proc.send_signal(stop)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status, seen + err
    assert (seen + err).replace("\r", "\n").strip().splitlines()[-1] == f"memlaw train: {word}; nothing was written"
    assert not out.exists()


def test_a_stop_message_starts_its_own_line_when_a_progress_bar_is_half_drawn(capsys):
    # the signal can land between a bar's first characters and the rest (seen in CI)
    sys.stderr.write("training:   0%|")
    say_stopped("memlaw train: interrupted; nothing was written")
    err = capsys.readouterr().err
    assert err.replace("\r", "\n").splitlines()[-1] == "memlaw train: interrupted; nothing was written"
