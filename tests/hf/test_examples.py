"""The Hugging Face example scripts run end to end (a few steps on the tiny model) and save PEFT adapters."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parents[2] / "examples" / "hf"


@pytest.mark.parametrize("script", ["trainer_memft.py", "trl_sft_memft.py"])
def test_example_trains_logs_memft_and_saves_a_peft_adapter(tiny_dir, tmp_path, script):
    if script.startswith("trl"):
        pytest.importorskip("trl")
    out = tmp_path / "adapter"
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--model", tiny_dir, "--steps", "2", "--items", "4", "--out", str(out),
         "--log-every", "1"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "memft/sub_threshold_share" in proc.stdout + proc.stderr
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()


def test_the_callback_example_trains_logs_memorisation_and_writes_recall_json(tiny_dir, tmp_path):
    out = tmp_path / "adapter"
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "callback.py"), "--model", tiny_dir, "--law", "none", "--steps", "4",
         "--every", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "memorisation/stubborn_tokens" in proc.stdout + proc.stderr
    assert "certified at step" in proc.stdout and f"recall.json: {out}" in proc.stdout
    assert (out / "recall.json").is_file() and (out / "adapter_config.json").is_file()
