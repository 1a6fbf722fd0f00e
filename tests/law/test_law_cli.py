"""memlaw fit, plan and report from the command line: outputs, files, and bad input."""

import csv
import json

import numpy as np
import pytest

from memlaw.law.fit import MemoryLaw

COLUMNS = ("rank", "length", "delta_loss", "final_loss", "ratio", "params", "initial_loss")


def write_csv(path, rows, columns=COLUMNS):
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(rows)
    return str(path)


def synthetic_rows():
    rng = np.random.default_rng(0)
    rows = []
    for ratio in (1.0, 0.4):
        for rank in (1, 2, 4, 8, 16):
            for length in (64, 128, 256, 512, 1024):
                delta = 4.0 * rank**0.7 * length**-0.45 + 0.2 + rng.normal(0, 0.01)
                rows.append((rank, length, delta, 12.0 - delta, ratio, 1152 * rank, 12.0))
    return rows


def test_fit_from_csv_prints_and_saves_the_law(tmp_path, cli):
    source = write_csv(tmp_path / "points.csv", synthetic_rows())
    code, out, err = cli("fit", "--from", source, "--out", str(tmp_path / "law.json"), "--bootstrap", "100")
    assert code == 0, err
    assert "50 points fitted, 0 excluded" in out and "held-out RMSE" in out and "best by held-out error" in out
    saved = json.loads((tmp_path / "law.json").read_text())
    assert saved["alpha"] == pytest.approx(0.7, abs=0.02) and saved["beta"] == pytest.approx(0.45, abs=0.02)
    law = MemoryLaw.from_dict(saved)
    assert law.predict(8, 256) == pytest.approx(4.0 * 8**0.7 * 256**-0.45 + 0.2, rel=0.02)
    assert "stopping rule" in saved["valid_for"] and saved["saturation_applied"] == "loss"  # a CSV without certified


def test_fit_prints_the_form_it_fitted(tmp_path, cli):
    source = write_csv(tmp_path / "points.csv", synthetic_rows())
    code, out, err = cli("fit", "--from", source, "--form", "no_offset", "--bootstrap", "20")
    assert code == 0, err
    lines = out.splitlines()
    assert "ΔL = C · r^α · ℓ^(−β)" in lines and not any(line.lstrip().startswith("b ") for line in lines)
    assert not any("+ b" in line for line in lines[:6])


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([(1, 64, 1.0, 3.0, 1, 1), (2, 64, 1.5, 3.0, 1, 2)], "too few points"),
        ([(r, 64, 1.0, 3.0, 1, r, 4.0 if r != 4 else "") for r in (1, 2, 4, 8, 16)], "row 3: 'initial_loss' is empty"),
        ([(r, 64, 1.0, 0.1, 1, r) for r in (1, 2, 4, 8, 16)], "no point left to fit: 5 excluded as saturated"),
        ([(r, 64 if r > 1 else -5, 1.0, 3.0, 1, r) for r in (1, 2, 4, 8, 16)], "must be positive"),
        ([(r, 64, "nan" if r == 2 else 1.0, 3.0, 1, r) for r in (1, 2, 4, 8, 16)], "NaN"),
    ],
)
def test_bad_points_are_one_line_and_exit_2(tmp_path, cli, rows, message):
    source = write_csv(tmp_path / "bad.csv", rows, COLUMNS[: len(rows[0])])
    code, _, err = cli("fit", "--from", source, "--bootstrap", "0")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_csv_without_the_needed_columns(tmp_path, cli):
    source = write_csv(tmp_path / "bad.csv", [(1, 2)], columns=("rank", "len"))
    code, _, err = cli("fit", "--from", source)
    assert code == 2 and "missing column(s) delta_loss, length" in err


@pytest.fixture()
def law_file(tmp_path, cli):
    source = write_csv(tmp_path / "points.csv", synthetic_rows())
    code, _, err = cli("fit", "--from", source, "--out", str(tmp_path / "law.json"), "--bootstrap", "50")
    assert code == 0, err
    return tmp_path / "law.json"


def test_plan_rank_and_length_from_a_saved_law(law_file, cli, tmp_path):
    code, out, err = cli(
        "plan",
        "--law",
        str(law_file),
        "--length",
        "300",
        "--initial-loss",
        "6",
        "--out",
        str(tmp_path / "p.json"),
    )
    assert code == 0, err
    plan = json.loads((tmp_path / "p.json").read_text())
    assert out.startswith(f"rank {plan['rank']} holds 300 tokens") and "95% CI of the rank" in out
    # counts are JSON integers: the rank passes straight on to memlaw train --rank
    assert all(type(plan[key]) is int for key in ("rank", "length", "trainable_params"))
    assert plan["predicted_steps"] is None or all(type(steps) is int for steps in plan["predicted_steps"])
    assert plan["predicted_final_loss"] < 0.6932 and "stopping rule" in plan["caveat"]
    code, out, err = cli("plan", "--law", str(law_file), "--rank", "4", "--initial-loss", "6")
    assert code == 0 and out.startswith("rank 4 holds about") and "trainable parameters" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--length", "100"], "pass --ratio or --initial-loss"),
        (["--length", "100", "--ratio", "0.7"], "no probes at ratio 0.7"),
        (["--rank", "-1", "--ratio", "1"], "--rank: must be ≥ 1"),
        (["--length", "100", "--rank", "2"], "not allowed with argument"),
    ],
)
def test_bad_plans_are_one_line_and_exit_2(law_file, cli, argv, message):
    code, _, err = cli("plan", "--law", str(law_file), *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_a_file_that_is_not_a_law_is_refused(tmp_path, cli):
    (tmp_path / "x.json").write_text('{"C": 1}')
    code, _, err = cli("plan", "--law", str(tmp_path / "x.json"), "--length", "10")
    assert code == 2 and "is not a law written by memlaw fit" in err
    code, _, err = cli("plan", "--law", str(tmp_path / "missing.json"), "--length", "10")
    assert code == 2 and "no such law file" in err


def test_report_writes_law_figures_cells_and_plan(tmp_path, cli):
    source = write_csv(tmp_path / "points.csv", synthetic_rows())
    out_dir = tmp_path / "report"
    code, _, err = cli("report", "--from", source, "--out", str(out_dir), "--plan-length", "200", "--bootstrap", "30")
    assert code == 0, err
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == [
        "cells.csv", "delta_vs_length.png", "law.json", "predicted_vs_measured.png", "recall_heatmap.png", "summary.md"
    ]  # fmt: skip
    for figure in out_dir.glob("*.png"):
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 10_000
    summary = (out_dir / "summary.md").read_text()
    assert "## Plan for ℓ = 200 tokens" in summary and "content like ρ = 0.4" in summary and "R² = " in summary
    assert summary.count("\n| ") == 50 + 1  # header and one row per cell
    cells = (out_dir / "cells.csv").read_text().splitlines()
    assert len(cells) == 51 and "bits_per_param" in cells[0]


def test_report_figures_as_svg_from_a_saved_law(tmp_path, cli, law_file):
    source = write_csv(tmp_path / "points.csv", synthetic_rows())
    out_dir = tmp_path / "svg-report"
    code, _, err = cli("report", "--from", source, "--law", str(law_file), "--format", "svg", "--out", str(out_dir))
    assert code == 0, err
    figures = sorted(p.name for p in out_dir.glob("*.svg"))
    assert figures == ["delta_vs_length.svg", "predicted_vs_measured.svg", "recall_heatmap.svg"]
    assert all("<svg" in (out_dir / name).read_text()[:2000] for name in figures)
    assert json.loads((out_dir / "law.json").read_text())["C"] == json.loads(law_file.read_text())["C"]


def test_report_never_overwrites_a_folder(tmp_path, cli):
    source = write_csv(tmp_path / "points.csv", synthetic_rows())
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "mine.txt").write_text("keep")
    code, _, err = cli("report", "--from", source, "--out", str(tmp_path / "report"), "--bootstrap", "0")
    assert code == 2 and "already exists and is not an empty folder" in err
    assert [p.name for p in (tmp_path / "report").iterdir()] == ["mine.txt"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
