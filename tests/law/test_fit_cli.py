import csv
import json

import numpy as np
import pytest

from memlaw.cli.main import main
from memlaw.law.fit import MemoryLaw


def run_cli(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def write_csv(path, rows, columns=("rank", "length", "delta_loss", "final_loss", "ratio", "params")):
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
                rows.append((rank, length, delta, 12.0 - delta, ratio, 1152 * rank))
    return rows


def test_fit_from_csv_prints_and_saves_the_law(tmp_path, capsys):
    source = write_csv(tmp_path / "points.csv", synthetic_rows())
    code, out, err = run_cli(capsys, "fit", "--from", source, "--out", str(tmp_path / "law.json"), "--bootstrap", "100")
    assert code == 0, err
    assert "50 points fitted, 0 excluded" in out and "held-out RMSE" in out and "best by held-out error" in out
    saved = json.loads((tmp_path / "law.json").read_text())
    assert saved["alpha"] == pytest.approx(0.7, abs=0.02) and saved["beta"] == pytest.approx(0.45, abs=0.02)
    law = MemoryLaw.from_dict(saved)
    assert law.predict(8, 256) == pytest.approx(4.0 * 8**0.7 * 256**-0.45 + 0.2, rel=0.02)
    assert "budget" in saved["valid_for"]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([(1, 64, 1.0, 3.0, 1, 1), (2, 64, 1.5, 3.0, 1, 2)], "too few points"),
        ([(r, 64, 1.0, 0.1, 1, r) for r in (1, 2, 4, 8, 16)], "points are saturated"),
        ([(r, 64 if r > 1 else -5, 1.0, 3.0, 1, r) for r in (1, 2, 4, 8, 16)], "must be positive"),
        ([(r, 64, "nan" if r == 2 else 1.0, 3.0, 1, r) for r in (1, 2, 4, 8, 16)], "NaN"),
    ],
)
def test_bad_points_are_one_line_and_exit_2(tmp_path, capsys, rows, message):
    source = write_csv(tmp_path / "bad.csv", rows)
    code, _, err = run_cli(capsys, "fit", "--from", source, "--bootstrap", "0")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_csv_without_the_needed_columns(tmp_path, capsys):
    source = write_csv(tmp_path / "bad.csv", [(1, 2)], columns=("rank", "len"))
    code, _, err = run_cli(capsys, "fit", "--from", source)
    assert code == 2 and "missing column(s) delta_loss, length" in err
