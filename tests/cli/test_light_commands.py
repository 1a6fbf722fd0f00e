"""The arithmetic commands (fit, plan, results) and ``import memlaw.report`` stay light.

They run as subprocesses under ``python -X importtime``, whose log names every module imported,
so the test sees exactly what a user's shell would load.
"""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from memlaw.sweep.store import ResultsStore

HEAVY = ("torch", "transformers", "peft", "matplotlib")


def imported(*argv: str, code: str | None = None) -> tuple[set[str], subprocess.CompletedProcess]:
    """Top-level packages a fresh interpreter imports for ``memlaw ARGV`` (or for ``code``)."""
    command = [sys.executable, "-X", "importtime", *(["-c", code] if code else ["-m", "memlaw.cli.main", *argv])]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    modules = set()
    for line in run.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            modules.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return modules, run


@pytest.fixture(scope="module")
def law_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("light")
    rng = np.random.default_rng(0)
    with (folder / "points.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["rank", "length", "delta_loss", "final_loss", "ratio", "params", "initial_loss"])
        for rank in (1, 2, 4, 8, 16):
            for length in (64, 128, 256, 512):
                delta = 4.0 * rank**0.7 * length**-0.45 + 0.2 + rng.normal(0, 0.01)
                writer.writerow([rank, length, delta, 12.0 - delta, 1.0, 1152 * rank, 12.0])
    ResultsStore(folder / "empty.db").close()
    return folder


@pytest.mark.parametrize("command", ["fit", "plan", "results"])
def test_arithmetic_commands_import_no_torch(law_files, command):
    law = law_files / "law.json"
    if command == "plan" and not law.exists():
        imported("fit", "--from", str(law_files / "points.csv"), "--out", str(law), "--bootstrap", "50")
    argv = {
        "fit": ("fit", "--from", str(law_files / "points.csv"), "--bootstrap", "50"),
        "plan": ("plan", "--law", str(law), "--length", "128", "--ratio", "1.0"),
        "results": ("results", "--store", str(law_files / "empty.db")),
    }[command]
    modules, run = imported(*argv)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "memlaw" in modules and "numpy" in modules  # the log is read right
    assert not modules & set(HEAVY), f"memlaw {command} imported {sorted(modules & set(HEAVY))}"


def test_importing_the_report_needs_no_matplotlib_and_keeps_the_callers_backend():
    code = (
        "import matplotlib; matplotlib.use('svg'); import json, sys; import memlaw.report; "
        "print(json.dumps([matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules]))"
    )
    modules, run = imported(code=code)
    assert run.returncode == 0, run.stderr[-2000:]
    backend, pyplot = json.loads(run.stdout)
    assert backend == "svg" and not pyplot
    assert not modules & {"torch", "transformers", "peft"}
    bare, _ = imported(code="import memlaw.report, memlaw")
    assert not bare & set(HEAVY)
