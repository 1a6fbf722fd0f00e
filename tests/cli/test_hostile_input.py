"""Hostile input, class by class: one clear line, exit 2, and nothing written or modified."""

import json
import os
import sqlite3
import stat
from pathlib import Path

import numpy as np
import pytest
import yaml

from memlaw.io import write_json_atomic
from memlaw.law.fit import MemoryLaw
from memlaw.law.state import Reference


def one_line_exit_2(result, message):
    code, out, err = result
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (code, err)
    assert out == ""


@pytest.fixture()
def law_file(tmp_path):
    rank, length = (a.ravel().astype(float) for a in np.meshgrid([1, 2, 4, 8], [8, 16, 32, 64]))
    law = MemoryLaw(bootstrap=0).fit(rank, length, 3.0 * rank**0.5 * length**-0.3 + 0.2)
    law.reference_ = Reference([{"ratio": 1.0, "length": 8.0, "initial_loss": 11.0}], params_per_rank=64.0)
    path = tmp_path / "law.json"
    write_json_atomic(path, law.to_dict())
    return path


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--length", "nan"], "must be a finite number"),
        (["--length", "inf"], "must be a finite number"),
        (["--rank", "0"], "must be ≥ 1"),
        (["--length", "20", "--target-loss", "nan"], "must be a finite number"),
        (["--length", "20", "--initial-loss", "-3"], "must be ≥ 0"),
        (["--length", "1e400"], "must be a finite number"),
    ],
)
def test_non_finite_and_out_of_range_plan_numbers(cli, law_file, flags, message):
    one_line_exit_2(cli("plan", "--law", str(law_file), *flags), message)


def test_a_law_file_with_non_finite_or_nonsense_constants_is_refused(cli, law_file, tmp_path):
    for name, value in (("C", float("nan")), ("alpha", float("inf")), ("C", -2.0)):
        values = json.loads(law_file.read_text())
        values[name] = value
        bad = tmp_path / f"bad-{name}.json"
        bad.write_text(json.dumps(values))  # json writes NaN and Infinity
        one_line_exit_2(cli("plan", "--law", str(bad), "--length", "20"), "is not a law written by memlaw fit")


def test_degenerate_fits_are_refused_and_nothing_is_saved(cli, tmp_path):
    rows = "rank,length,delta_loss\n" + "".join(f"{r},{n},2.5\n" for r in (1, 2, 4) for n in (8, 16, 32, 64))
    (tmp_path / "same.csv").write_text(rows)
    out = tmp_path / "law.json"
    one_line_exit_2(cli("fit", "--from", str(tmp_path / "same.csv"), "--out", str(out)), "have the same ΔL")
    falling = "rank,length,delta_loss\n" + "".join(
        f"{r},{n},{-0.5 * r**0.5 * n**-0.3 - 0.01 * r}\n" for r in (1, 2, 4, 8) for n in (8, 16, 32, 64)
    )
    (tmp_path / "negative.csv").write_text(falling)
    one_line_exit_2(cli("fit", "--from", str(tmp_path / "negative.csv"), "--out", str(out)), "nothing saved")
    assert not out.exists()


def test_output_paths_are_checked_before_any_work(cli, tmp_path, law_file):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    (tmp_path / "p.csv").write_text("rank,length,delta_loss\n1,8,1\n2,8,2\n4,8,3\n1,16,0.5\n2,16,1\n4,16,2\n")
    one_line_exit_2(cli("fit", "--from", str(tmp_path / "p.csv"), "--out", str(folder)), "is a folder")
    one_line_exit_2(cli("results", "--store", str(tmp_path / "none.db"), "--csv", str(folder)), "is a folder")
    one_line_exit_2(cli("plan", "--law", str(law_file), "--length", "20", "--out", str(folder)), "is a folder")
    assert list(folder.iterdir()) == []


def test_a_foreign_sqlite_file_is_never_modified(cli, tmp_path):
    foreign = tmp_path / "other.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE cells (id INTEGER, name TEXT)")
        db.execute("INSERT INTO cells VALUES (1, 'kept')")
    before = foreign.read_bytes()
    one_line_exit_2(cli("results", "--store", str(foreign)), "a SQLite database of another program")
    assert foreign.read_bytes() == before and not (tmp_path / "other.db-wal").exists()


def write_sweep(path, model, grid, **fixed):
    path.write_text(yaml.safe_dump({"grid": grid, "fixed": {"model": model, "data": "longcontext", **fixed}}))
    return path


@pytest.mark.parametrize(
    ("grid", "fixed", "extra", "message"),
    [
        ({"rank": [1]}, {"length": 8, "lr": float("nan")}, [], "setting 'lr' must be a finite number"),
        ({"rank": [1], "length": {"start": 8, "stop": float("inf"), "step": 8}}, {}, [], "must be finite numbers"),
        ({"rank": [1], "length": {"start": 8, "stop": 16, "step": float("nan")}}, {}, [], "must be finite numbers"),
        ({"rank": [1], "length": {"start": 8, "stop": 1e9, "step": 1}}, {}, [], "more than 10,000 values"),
        ({"rank": [1, 2, 3], "length": [8, 16, 24, 32]}, {}, ["--max-cells", "10"], "12 cells, more than 10"),
        ({"rank": [1]}, {"data": "missing.jsonl"}, [], "text file): missing.jsonl"),
    ],
)
def test_sweeps_check_every_cell_before_the_model_loads(cli, tmp_path, grid, fixed, extra, message):
    config = write_sweep(tmp_path / "s.yaml", "no-such-model-is-ever-loaded", grid, **fixed)
    store = tmp_path / "r.db"
    one_line_exit_2(cli("sweep", str(config), "--store", str(store), *extra), message)
    assert not store.exists()


def test_probe_numbers_must_be_finite(cli, tiny_dir):
    one_line_exit_2(
        cli("probe", "--model", tiny_dir, "--length", "8", "--lr", "inf"), "setting 'lr' must be a finite number"
    )


def test_a_folder_without_a_model_says_so_in_full(cli, tmp_path):
    (tmp_path / "not-a-model").mkdir()
    (tmp_path / "not-a-model" / "notes.txt").write_text("hello")
    one_line_exit_2(
        cli("probe", "--model", str(tmp_path / "not-a-model"), "--length", "8"), "is a folder without config.json"
    )


@pytest.mark.slow
def test_quiet_silences_every_progress_bar(tmp_path):
    import subprocess
    import sys

    # loading the default model converts its GGUF file under a progress bar; --quiet silences it
    data = tmp_path / "one.jsonl"
    data.write_text('{"key": "Ada:", "value": "1815"}\n')
    command = [sys.executable, "-m", "memlaw.cli.main", "plan", "--data", str(data), "--json", "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and json.loads(done.stdout)["items"] == 1
    assert done.stderr == ""


def test_a_rank_beyond_the_models_width_fails_before_the_weights_load(cli, tiny_dir):
    one_line_exit_2(
        cli("probe", "--model", tiny_dir, "--length", "8", "--rank", "1000000000"),
        "rank 1000000000 exceeds the model's width 64",
    )


def test_fuzzing_finds_stay_fixed(cli, law_file, tmp_path, tiny_dir):
    """Cases of a fuzzing pass that once ended in tracebacks, exit 0 or files left behind."""
    (tmp_path / "p.csv").write_text("rank,length,delta_loss\n1,8,1\n2,8,2\n4,8,3\n1,16,0.5\n2,16,1\n4,16,2\n")
    a_file = tmp_path / "p.csv"
    # an output path under a file, or where nothing can be created
    one_line_exit_2(cli("fit", "--from", str(a_file), "--out", str(a_file / "law.json")), "cannot write")
    one_line_exit_2(cli("plan", "--law", str(law_file), "--length", "20", "--out", "/proc/x/p.json"), "cannot write")
    one_line_exit_2(cli("results", "--store", str(a_file / "s.db")), "no results store")
    # a 0-byte file is not turned into a store by reading it
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    one_line_exit_2(cli("fit", "--from", str(empty)), "neither a results store")
    assert empty.read_bytes() == b""
    (tmp_path / "binary.csv").write_bytes(b"rank,length,delta_loss\n\x80\x81\xff\n")
    one_line_exit_2(cli("fit", "--from", str(tmp_path / "binary.csv")), "not UTF-8")
    # laws whose parts are of the wrong kind
    for change in ({"C": True}, {"certification": {"intercept": 1.0, "slope": "x"}},
                   {"reference": None, "grid": None}):  # fmt: skip
        values = {**json.loads(law_file.read_text()), **change}
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(values))
        one_line_exit_2(cli("plan", "--law", str(bad), "--length", "20"), "is not a law written by memlaw fit")
    (tmp_path / "latin1.json").write_bytes(b'{"C": "\xff\xfe"}')
    one_line_exit_2(cli("plan", "--law", str(tmp_path / "latin1.json"), "--length", "20"), "not UTF-8")
    # numbers a plan cannot mean
    one_line_exit_2(cli("plan", "--law", str(law_file), "--rank", "1.5"), "--rank: not a whole number")
    one_line_exit_2(cli("plan", "--law", str(law_file), "--length", "1e-300"), "at least one token")
    one_line_exit_2(cli("fit", "--from", str(a_file), "--bootstrap", "-5"), "--bootstrap: must be ≥ 0")
    # refused before any store exists
    config = write_sweep(tmp_path / "s.yaml", tiny_dir, {"rank": [1]}, length=8, epochs=1)
    one_line_exit_2(cli("sweep", str(config), "--store", str(tmp_path / "w.db"), "--workers", "0"), "--workers")
    one_line_exit_2(
        cli("calibrate", "--model", tiny_dir, "--store", str(tmp_path / "c.db"), "--set", "bogus=1"),
        "unknown axis or setting 'bogus'",
    )
    one_line_exit_2(
        cli("calibrate", "--model", tiny_dir, "--store", str(tmp_path / "c.db"), "--set", "placement=peft"),
        "--set placement: choose the placement with --placement",
    )
    assert not (tmp_path / "w.db").exists() and not (tmp_path / "c.db").exists()
    # refused before training (nothing printed): outputs that cannot be written, folders as data,
    # method options of the wrong type
    facts = tmp_path / "facts.jsonl"
    facts.write_text('{"key": "Ada", "value": "7731"}\n')
    probe = ("probe", "--model", tiny_dir, "--data", str(facts), "--rank", "1", "--epochs", "1")
    one_line_exit_2(cli(*probe, "--out", "/proc/x/r.json"), "--out /proc/x/r.json: cannot write in /proc")
    one_line_exit_2(cli(*probe, "--save", "/proc/x/adapter"), "--save /proc/x/adapter: cannot write in /proc")
    one_line_exit_2(cli("train", str(facts), "--model", tiny_dir, "--out", "/proc/x"), "cannot write in /proc")
    one_line_exit_2(cli("probe", "--model", tiny_dir, "--data", str(tmp_path)), "is a folder, not a file")
    one_line_exit_2(cli("train", str(tmp_path), "--model", tiny_dir, "--out", str(tmp_path / "a")), "is a folder")
    one_line_exit_2(
        cli("train", str(facts), "--model", tiny_dir, "--out", str(tmp_path / "a"), "--method", "memft-ot",
            "--method-options", "{threshold: banana}"),
        "must be a number, got 'banana', e.g. --method-options '{threshold: 0.5}'",
    )  # fmt: skip
    assert not (tmp_path / "a").exists()


def checksums(*paths):
    import hashlib

    return [hashlib.sha256(path.read_bytes()).hexdigest() for path in paths]


def test_outputs_that_collide_with_each_other_or_an_input_are_refused_before_any_work(cli, law_file, tmp_path):
    folder = tmp_path / "D"
    plan = ("plan", "--law", str(law_file), "--length", "20")
    one_line_exit_2(cli(*plan, "--out", str(folder / "plan.json"), "--emit", "peft", str(folder)), "lies inside --emit")
    one_line_exit_2(cli(*plan, "--out", str(folder), "--emit", "peft", str(folder)), "name the same place")
    one_line_exit_2(cli(*plan, "--out", str(law_file)), "is also --law, which it would overwrite")
    assert not folder.exists()
    points = tmp_path / "p.csv"
    points.write_text("rank,length,delta_loss\n1,8,1\n2,8,2\n4,8,3\n1,16,0.5\n2,16,1\n4,16,2\n")
    before = checksums(points, law_file)
    one_line_exit_2(cli("fit", "--from", str(points), "--out", str(points)), "is also --from")
    one_line_exit_2(cli("results", "--store", str(points), "--csv", str(points)), "is also --store")
    assert checksums(points, law_file) == before


@pytest.fixture()
def damaged_store(tmp_path):
    """A real store, then one of its measurement columns dropped (as an older or foreign tool might)."""
    from memlaw.sweep.store import ResultsStore

    path = tmp_path / "s.db"
    ResultsStore(path).close()
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE cells DROP COLUMN final_loss")
    db.commit()
    db.close()  # checkpointed: the whole store is in the one file
    return path


@pytest.mark.parametrize("extra", [[], ["--where", "final_loss=1"], ["--csv", "out.csv"]])
def test_a_store_that_lacks_a_column_is_named_damaged_and_left_alone(cli, damaged_store, tmp_path, extra, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = checksums(damaged_store)
    one_line_exit_2(cli("results", "--store", str(damaged_store), *extra), "damaged memlaw results store")
    assert checksums(damaged_store) == before and not (tmp_path / "out.csv").exists()


@pytest.fixture()
def saved_adapter(cli, tiny_dir, tmp_path):
    facts = tmp_path / "facts.jsonl"
    facts.write_text('{"key": "Ada", "value": "7381"}\n')
    folder = tmp_path / "adapter"
    code, _, err = cli("probe", "--model", tiny_dir, "--data", str(facts), "--epochs", "1", "--save", str(folder))
    assert code == 0, err
    return folder


def _halve(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda d: _halve(d / "adapter_model.safetensors"), "the adapter's weights cannot be loaded"),
        (lambda d: (d / "adapter_config.json").write_text("garbage"), "adapter_config.json is damaged"),
        (lambda d: (d / "adapter_config.json").write_text("[8]"), "adapter_config.json is damaged (not a JSON object)"),
        (lambda d: (d / "probe_config.json").write_text("[1, 2]"), "probe_config.json is damaged (not a JSON object)"),
    ],
    ids=["half the weights", "config not JSON", "config a list", "settings a list"],
)
def test_a_damaged_adapter_is_one_line_and_left_alone(cli, saved_adapter, damage, expected):
    damage(saved_adapter)
    files = sorted(saved_adapter.iterdir())
    before = checksums(*files)
    one_line_exit_2(cli("ask", str(saved_adapter), "Ada"), expected)
    assert sorted(saved_adapter.iterdir()) == files and checksums(*files) == before


def test_ask_refuses_an_empty_prompt_and_a_missing_adapter(cli, saved_adapter, tmp_path):
    one_line_exit_2(cli("ask", str(saved_adapter), "  "), "the prompt is empty")
    one_line_exit_2(cli("ask", str(tmp_path / "nowhere"), "Ada"), "nowhere not found")


def test_ask_refuses_what_goes_beyond_the_context_before_the_weights_load(cli, saved_adapter, tiny_dir, tmp_path):
    # the adapter's model without its weights: a check made after loading would fail on them instead
    weightless = tmp_path / "weightless"
    weightless.mkdir()
    for part in Path(tiny_dir).iterdir():
        if not part.name.endswith(".safetensors"):
            (weightless / part.name).write_bytes(part.read_bytes())
    settings = saved_adapter / "probe_config.json"
    settings.write_text(json.dumps({**json.loads(settings.read_text()), "model": str(weightless)}))
    one_line_exit_2(cli("ask", str(saved_adapter), "Ada " * 5000), "beyond the model's context of 2,048 tokens")
    one_line_exit_2(cli("ask", str(saved_adapter), "Ada", "--max-new-tokens", "65536"), "lower --max-new-tokens")
    one_line_exit_2(cli("ask", str(saved_adapter), "Ada", "--max-new-tokens", "0"), "must be ≥ 1")


def test_library_warnings_never_reach_the_user(capfd, tmp_path):
    import warnings

    from memlaw.cli.main import main

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a numpy RuntimeWarning would end the plan with it
        assert main(["plan", "--rank", "576", "--ratio", "1.0"]) == 0  # full rank, valid
    capfd.readouterr()
    fake = tmp_path / "fake.parquet"
    fake.write_text("key,value\nAda,7381\n")
    assert main(["plan", "--data", str(fake)]) == 2
    _, err = capfd.readouterr()
    assert err.strip().splitlines() == [err.strip()] and "could not be read as PARQUET" in err, err


def test_files_that_are_not_data_say_what_they_are(cli, law_file, tmp_path):
    (tmp_path / "header.csv").write_text("key,value\n")
    plan = ("plan", "--law", str(law_file), "--data")
    one_line_exit_2(cli(*plan, str(tmp_path / "header.csv")), "has no records (a header line only)")
    one_line_exit_2(cli(*plan, "/dev/null"), "is not a regular file")
    os.mkfifo(tmp_path / "fifo.jsonl")  # read, it would block for ever
    one_line_exit_2(cli(*plan, str(tmp_path / "fifo.jsonl")), "is not a regular file")


def test_outputs_follow_the_umask_and_a_replaced_file_keeps_its_mode_and_is_announced(cli, law_file, tmp_path):
    previous = os.umask(0o022)
    try:
        out = tmp_path / "plan.json"
        code, _, err = cli("plan", "--law", str(law_file), "--length", "20", "--out", str(out))
        assert code == 0 and err == "" and stat.S_IMODE(out.stat().st_mode) == 0o644, err
        out.chmod(0o640)
        code, _, err = cli("plan", "--law", str(law_file), "--length", "20", "--out", str(out))
        assert code == 0 and f"--out {out} exists: it will be replaced" in err
        assert stat.S_IMODE(out.stat().st_mode) == 0o640
        report = tmp_path / "report"
        points = tmp_path / "p.csv"
        points.write_text("rank,length,delta_loss\n1,8,1\n2,8,2\n4,8,3\n1,16,0.5\n2,16,1\n4,16,2\n")
        code, _, err = cli("report", "--from", str(points), "--out", str(report), "--bootstrap", "0")
        assert code == 0, err
        assert stat.S_IMODE(report.stat().st_mode) == 0o755
        assert all(stat.S_IMODE(f.stat().st_mode) == 0o644 for f in report.iterdir() if f.is_file())
    finally:
        os.umask(previous)
