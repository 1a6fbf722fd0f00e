"""``memlaw probe`` end to end on a tiny local model folder: outputs, and one-line errors."""

import json
import re
import subprocess
import sys

import pytest
import yaml
from peft import PeftModel
from transformers import AutoModelForCausalLM

from memlaw.measure import evaluate_tokens
from memlaw.models import load_model
from memlaw.placements import load_adapter
from memlaw.probe import ProbeConfig, build_data


def test_probe_writes_result_and_peft_adapter(tiny_dir, tmp_path, cli):
    code, out, err = cli(
        "probe",
        "--model",
        tiny_dir,
        "--data",
        "phonebook",
        "--length",
        "30",
        "--rank",
        "4",
        "--placement",
        "peft",
        "--layer",
        "1,2",
        "--epochs",
        "3",
        "--quiet",
        "--out",
        str(tmp_path / "r.json"),
        "--save",
        str(tmp_path / "adapter"),
    )
    assert code == 0, err
    assert "ΔL =" in out and "greedy recall" in out
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["length"] == 30 and result["config"]["layer"] == [1, 2]
    assert result["trainable_params"] == 2 * 4 * (64 + 128) * 3
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_dir), str(tmp_path / "adapter"))
    assert sum(p.numel() for n, p in model.named_parameters() if "lora_" in n) == result["trainable_params"]


def test_saved_bypass_adapter_reproduces_the_reported_probabilities(tiny_dir, tmp_path, cli):
    code, _, err = cli(
        "probe",
        "--model",
        tiny_dir,
        "--data",
        "longcontext",
        "--length",
        "16",
        "--rank",
        "4",
        "--epochs",
        "20",
        "--lr",
        "0.02",
        "--quiet",
        "--out",
        str(tmp_path / "r.json"),
        "--save",
        str(tmp_path / "bp"),
    )
    assert code == 0, err
    result = json.loads((tmp_path / "r.json").read_text())
    loaded = load_model(tiny_dir, device="cpu")
    load_adapter(loaded.model, tmp_path / "bp")
    data = build_data(
        ProbeConfig(**json.loads((tmp_path / "bp" / "probe_config.json").read_text())), loaded.tokenizer, 49152
    )
    probs = evaluate_tokens(loaded.model, data, pad_id=loaded.tokenizer.pad_token_id).probs
    assert probs.tolist() == pytest.approx(result["items"][0]["token_probs"], abs=2e-6)


def test_yaml_config_with_command_line_override(tiny_dir, tmp_path, cli):
    config = tmp_path / "probe.yaml"
    config.write_text(yaml.safe_dump({"model": tiny_dir, "data": "longcontext", "length": 12, "rank": 3, "epochs": 2}))
    code, _, err = cli("probe", "--config", str(config), "--rank", "5", "--quiet", "--out", str(tmp_path / "r.json"))
    assert code == 0, err
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["config"]["rank"] == 5 and result["config"]["length"] == 12 and result["length"] == 12


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return str(path)


BAD_INPUTS = {
    "missing file": (lambda d: ["--data", str(d / "none.jsonl")], "data file not found"),
    "empty file": (lambda d: ["--data", write_lines(d / "e.jsonl", [""])], "has no records"),
    "malformed line": (
        lambda d: ["--data", write_lines(d / "m.jsonl", ['{"key": "a", "value": "1"}', "{oops"])],
        r"m\.jsonl:2: not valid JSON",
    ),
    "unknown model": (lambda d: ["--model", str(d / "no-such-model")], "unknown model"),
    "rank zero": (lambda d: ["--rank", "0"], "rank must be a positive integer"),
    "layer out of range": (lambda d: ["--layer", "7"], r"layer 7 is out of range: this model has layers 0\.\.3"),
    "length beyond data": (
        lambda d: ["--data", write_lines(d / "s.jsonl", ['{"key": "a", "value": "12"}']), "--length", "50"],
        "longer than the data",
    ),
    "length beyond context": (lambda d: ["--ratio", "0", "--length", "3000"], "beyond the model's context"),
    "ratio above one": (lambda d: ["--ratio", "1.5"], r"ratio must be within \[0, 1\]"),
    "rank not a number": (lambda d: ["--rank", "eight"], "--rank must be an integer"),
    "unknown yaml key": (
        lambda d: ["--config", write_lines(d / "c.yaml", ["rnak: 3"])],
        "unknown setting 'rnak'",
    ),
    "unknown option": (lambda d: ["--rnak", "3"], "unrecognized arguments"),
    "unknown stopping rule": (lambda d: ["--until", "forever"], "until must be budget, certified or converged"),
    "converged without checks": (
        lambda d: ["--until", "converged", "--check-every", "0"],
        "until converged stops at certification too",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_input_is_one_line_and_exit_2(tiny_dir, tmp_path, cli, case):
    extra, message = BAD_INPUTS[case]
    defaults = ["--model", tiny_dir, "--data", "longcontext", "--length", "8", "--epochs", "1", "--quiet"]
    out_file = tmp_path / "result.json"
    code, _, err = cli("probe", *defaults, *extra(tmp_path), "--out", str(out_file))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert re.search(message, lines[0]), lines[0]
    assert not out_file.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".result.json")]


def test_save_into_a_non_empty_folder_is_refused_before_training(tiny_dir, tmp_path, cli):
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "keep.txt").write_text("mine")
    code, _, err = cli("probe", "--model", tiny_dir, "--length", "8", "--save", str(tmp_path / "adapter"))
    assert code == 2 and "not an empty folder" in err
    assert [p.name for p in (tmp_path / "adapter").iterdir()] == ["keep.txt"]


def test_console_entry_point_runs(tiny_dir, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "memlaw.cli.main", "probe", "--model", tiny_dir, "--length", "6", "--rank", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "memlaw probe: error: rank must be a positive integer, got 0"


def test_until_converged_records_why_training_stopped(tiny_dir, tmp_path, cli):
    out_file = tmp_path / "r.json"
    argv = ["--model", tiny_dir, "--length", "48", "--rank", "1", "--lr", "0.02", "--until", "converged"]
    code, out, err = cli(
        "probe", *argv, "--max-steps", "400", "--plateau-steps", "20", "--quiet", "--out", str(out_file)
    )
    assert code == 0, err
    result = json.loads(out_file.read_text())
    assert result["stop_reason"] == "converged" and result["budget_limited"] is False
    assert result["steps"] < 400 and isinstance(result["loss_slope"], float)
    assert "training ended at a plateau of the loss" in out
