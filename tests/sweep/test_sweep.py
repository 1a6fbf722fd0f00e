"""Sweeps on a tiny local model: a full grid, resume, failures, SIGKILL, bad configs, results."""

import csv
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import yaml

from memlaw.errors import MemlawInputError
from memlaw.sweep import ResultsStore, cell_key, load_sweep, run_sweep
from memlaw.sweep.leases import Leases


def write_sweep(path, model, grid, **fixed):
    path.write_text(yaml.safe_dump({"grid": grid, "fixed": {"model": model, "data": "longcontext", **fixed}}))
    return path


def test_grid_fills_the_store_and_a_second_run_does_nothing(tiny_dir, tmp_path):
    config = write_sweep(
        tmp_path / "s.yaml", tiny_dir, {"rank": [1, 2], "length": {"start": 8, "stop": 12, "step": 4}}, epochs=2
    )
    sweep = load_sweep(config)
    assert len(sweep.cells()) == 4
    store = ResultsStore(tmp_path / "r.db")
    report = run_sweep(sweep, store)
    assert (report.total, report.skipped, report.done, report.failed) == (4, 0, 4, 0)
    rows = store.rows()
    assert sorted((r["rank"], r["length"]) for r in rows) == [(1, 8), (1, 12), (2, 8), (2, 12)]
    assert {r["cell_key"] for r in rows} == {cell_key(c) for c in sweep.cells()}
    for row in rows:
        assert row["status"] == "done" and row["delta_loss"] == pytest.approx(row["initial_loss"] - row["final_loss"])
        assert row["stop_reason"] == "budget" and row["budget_limited"] in (0, 1) and row["loss_slope"] is not None
        assert len(ResultsStore.token_probs(row)) == row["length"]
    stamps = {r["cell_key"]: r["finished_at"] for r in rows}

    again = run_sweep(load_sweep(config), ResultsStore(tmp_path / "r.db"))
    assert (again.skipped, again.done, again.failed) == (4, 0, 0)
    assert {r["cell_key"]: r["finished_at"] for r in store.rows()} == stamps


def test_a_failing_cell_is_recorded_and_the_others_run(tiny_dir, tmp_path):
    # 3000 random tokens do not fit the tiny model's 2048-token context
    config = write_sweep(tmp_path / "s.yaml", tiny_dir, {"length": [8, 3000, 10]}, epochs=1)
    store = ResultsStore(tmp_path / "r.db")
    report = run_sweep(load_sweep(config), store)
    assert (report.done, report.failed) == (2, 1)
    (failed,) = store.rows({"status": "failed"})
    assert failed["length"] == 3000 and "context" in failed["error"]
    assert run_sweep(load_sweep(config), store).done == 0  # failures are not retried by default
    assert run_sweep(load_sweep(config), store, retry_failed=True).failed == 1


def wait_for_cells(db, count: int, timeout: float = 120) -> int:
    """Poll a store a running sweep writes until it holds ``count`` cells (or time runs out)."""
    deadline, done = time.time() + timeout, 0
    while time.time() < deadline and done < count:
        time.sleep(0.2)
        if db.exists():
            try:
                with sqlite3.connect(db) as conn:
                    done = conn.execute("SELECT COUNT(*) FROM cells").fetchone()[0]
            except sqlite3.OperationalError:
                done = 0  # the table does not exist yet
    return done


#: Epochs of the cells a signal must land inside: thousands of times a short cell's 40, so the
#: signal sent once the short cells are stored always finds these still training.
ENDLESS_EPOCHS = 200_000


def write_short_then_endless(path, model, short, endless):
    """Cells that finish (``short`` data seeds, 40 epochs each) and, after them, cells that cannot
    finish while a test runs: whatever the machine's speed, a signal sent once the short cells
    are stored lands while work remains."""
    grid = [{"data_seed": short, "epochs": [40]}, {"data_seed": endless, "epochs": [ENDLESS_EPOCHS]}]
    path.write_text(yaml.safe_dump({"grid": grid, "fixed": {"model": model, "data": "longcontext", "length": 64}}))
    return path


def stored_seeds(rows) -> list[int]:
    return sorted(json.loads(r["config"])["data_seed"] for r in rows)


def resume_short_cells(tmp_path, model, store, short):
    """Resume the finished part of an interrupted sweep plus one new short cell: the stored cells
    are skipped, not trained again, and the new one is added."""
    config = write_sweep(tmp_path / "resume.yaml", model, {"data_seed": [*short, 99]}, length=64, epochs=40)
    return run_sweep(load_sweep(config), store)


def test_sigkill_mid_sweep_then_resume_stores_every_cell_exactly_once(tiny_dir, tmp_path):
    # cells with different data never train stacked: they finish one at a time
    config = write_short_then_endless(tmp_path / "s.yaml", tiny_dir, [1, 2], [3, 4])
    db = tmp_path / "r.db"
    command = [sys.executable, "-m", "memlaw.cli.main", "sweep", str(config), "--store", str(db), "--quiet"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    assert wait_for_cells(db, 2) == 2
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    store = ResultsStore(db)
    before = {r["cell_key"]: r["finished_at"] for r in store.rows()}
    assert stored_seeds(store.rows()) == [1, 2], "the endless cells were still training"
    report = resume_short_cells(tmp_path, tiny_dir, store, [1, 2])
    assert (report.skipped, report.done) == (2, 1)
    rows = store.rows()
    assert len(rows) == 3 and len({r["cell_key"] for r in rows}) == 3
    assert all(r["status"] == "done" for r in rows)
    assert {k: v for k, v in ((r["cell_key"], r["finished_at"]) for r in rows) if k in before} == before


BAD_SWEEPS = {
    "unknown axis": ({"grid": {"rnak": [1]}}, "unknown axis or setting 'rnak'"),
    "empty axis": ({"grid": {"rank": []}}, "axis 'rank' is empty"),
    "wrong type": ({"grid": {"rank": ["eight"]}}, "setting 'rank' must be an integer"),
    "bad range": ({"grid": {"rank": {"start": 1, "stop": 4}}}, "needs exactly start, stop and step"),
    "unknown section": ({"grid": {"rank": [1]}, "fixd": {}}, "unknown section 'fixd'"),
    "no grid": ({"fixed": {"rank": 1}}, "'grid' must map"),
    "empty grid in a list": ({"grid": [{"rank": [1]}, {}]}, "'grid' must map"),
    "list of values as grid": ({"grid": [1, 2]}, "'grid' must map"),
    "axis in a listed grid also fixed": (
        {"grid": [{"rank": [1]}, {"length": [4]}], "fixed": {"length": 4}},
        "both an axis",
    ),
    "invalid cell": (
        {"grid": {"ratio": [0.5, 2.0]}, "fixed": {"data": "longcontext", "length": 4}},
        "ratio must be within",
    ),
}


def test_a_list_of_grids_is_the_union_of_their_cells_in_order(tmp_path):
    # lengths that follow the rank, as a capacity sweep needs; (2, 12) is listed twice, runs once
    path = tmp_path / "s.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "grid": [
                    {"rank": [1], "length": [8, 12]},
                    {"rank": [2], "length": [12, 16]},
                    {"rank": [2], "length": [12]},
                ],
                "fixed": {"data": "longcontext", "epochs": 2},
            }
        )
    )
    cells = load_sweep(path).cells()
    assert [(c.rank, c.length) for c in cells] == [(1, 8), (1, 12), (2, 12), (2, 16)]
    assert all(c.epochs == 2 for c in cells)
    with pytest.raises(MemlawInputError, match="'length' is an axis"):
        load_sweep(path, {"length": 4})


@pytest.mark.parametrize("case", BAD_SWEEPS, ids=list(BAD_SWEEPS))
def test_bad_sweep_configs_are_one_line_and_exit_2(tmp_path, cli, case):
    content, message = BAD_SWEEPS[case]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(content))
    code, _, err = cli("sweep", str(path), "--store", str(tmp_path / "r.db"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "r.db").exists()


def test_store_of_another_schema_is_refused(tiny_dir, tmp_path, cli):
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO meta VALUES ('store_schema', '999')")
    config = write_sweep(tmp_path / "s.yaml", tiny_dir, {"rank": [1]}, length=4, epochs=1)
    code, _, err = cli("sweep", str(config), "--store", str(db))
    assert code == 2 and "store schema 999" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "junk.db").write_text("not a database at all, just text" * 100)
    code, _, err = cli("sweep", str(config), "--store", str(tmp_path / "junk.db"))
    assert code == 2 and "not a memlaw results store" in err


def test_results_lists_filters_and_exports(tiny_dir, tmp_path, cli):
    config = write_sweep(tmp_path / "s.yaml", tiny_dir, {"rank": [1, 2]}, length=6, epochs=1)
    db = str(tmp_path / "r.db")
    code, out, err = cli("sweep", str(config), "--store", db, "--quiet")
    assert code == 0 and "2 cells: 0 already stored, 2 done, 0 failed" in out, err
    code, out, _ = cli("results", "--store", db, "--where", "rank=2")
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 2 and lines[1].split("\t")[:3] == ["done", "2", "6"]
    code, out, _ = cli("results", "--store", db, "--csv", str(tmp_path / "r.csv"))
    with open(tmp_path / "r.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert code == 0 and len(rows) == 2 and {"delta_loss", "cell_key", "config"} <= set(rows[0])
    pq = pytest.importorskip("pyarrow.parquet")
    code, _, _ = cli("results", "--store", db, "--parquet", str(tmp_path / "r.parquet"))
    table = pq.read_table(tmp_path / "r.parquet").to_pylist()
    assert code == 0 and sorted(r["rank"] for r in table) == ["1", "2"]
    assert [r["delta_loss"] for r in table] == pytest.approx([float(r["delta_loss"]) for r in rows])
    code, _, err = cli("results", "--store", db, "--where", "colour=blue")
    assert code == 2 and "cannot filter on 'colour'" in err


@pytest.mark.parametrize("backend", ["ray", "workers"])
def test_other_backends_give_the_rows_of_the_local_backend(tiny_dir, tmp_path, backend):
    if backend == "ray":
        pytest.importorskip("ray")
    config = write_sweep(tmp_path / "s.yaml", tiny_dir, {"rank": [1, 3], "ratio": [1.0, 0.5]}, length=10, epochs=3)
    local, remote = ResultsStore(tmp_path / "local.db"), ResultsStore(tmp_path / "other.db")
    assert run_sweep(load_sweep(config), local).done == 4
    options = {"backend": "ray"} if backend == "ray" else {"workers": 2}
    report = run_sweep(load_sweep(config), remote, **options)
    assert (report.done, report.failed) == (4, 0)
    expected = {r["cell_key"]: r for r in local.rows()}
    rows = remote.rows()
    assert {r["cell_key"] for r in rows} == set(expected)
    for row in rows:
        twin = expected[row["cell_key"]]
        for column in ("initial_loss", "final_loss", "delta_loss", "frac_above_half", "exact_match", "certified"):
            assert row[column] == pytest.approx(twin[column], rel=1e-4, abs=1e-5), column
        assert ResultsStore.token_probs(row) == pytest.approx(ResultsStore.token_probs(twin), abs=2e-3)


SHIPPED_SWEEPS = {
    "sweep-smollm2.yaml": 24,
    "demo-smollm2.yaml": 8,
    "budget-smollm2.yaml": 24,
    "converged-smollm2.yaml": 8,
    "boundary-smollm2.yaml": 9,
    "peft-transfer-smollm2.yaml": 5,
    "composition-parts-smollm2.yaml": 24,
}


@pytest.mark.parametrize("name", SHIPPED_SWEEPS)
def test_the_shipped_example_sweeps_are_valid(name):
    from pathlib import Path

    folder = Path(__file__).parents[2] / "examples"
    assert set(SHIPPED_SWEEPS) == {p.name for p in folder.glob("*.yaml")}  # every shipped sweep is checked
    cells = load_sweep(folder / name).cells()
    assert len(cells) == SHIPPED_SWEEPS[name] and {c.model for c in cells} == {"smollm2-135m-instruct"}


def test_methods_and_their_options_are_sweep_settings(tiny_dir, tmp_path):
    config = write_sweep(
        tmp_path / "s.yaml", tiny_dir, {"method": ["sft", "memft-ot", "memft-sw"]}, length=8, epochs=2,
        method_options=None,
    )  # fmt: skip
    store = ResultsStore(tmp_path / "r.db")
    assert run_sweep(load_sweep(config), store).done == 3
    assert sorted(r["method"] for r in store.rows()) == ["memft-ot", "memft-sw", "sft"]
    # options are part of a cell's identity; no options hash as before options existed
    plain = load_sweep(config).cells()[1]
    assert cell_key(plain) == cell_key(replace(plain, method_options={}))
    assert cell_key(plain) != cell_key(replace(plain, method_options={"fallback": "skip"}))


def test_a_searched_learning_rate_is_stored_as_the_rate_the_cell_trained_at(tiny_dir, tmp_path):
    # a base rate far too high for the tiny model: the search comes down from it
    config = write_sweep(tmp_path / "s.yaml", tiny_dir, {"lr_search": [True, False]}, length=8, lr=3.0, max_steps=30)
    store = ResultsStore(tmp_path / "r.db")
    assert run_sweep(load_sweep(config), store).done == 2
    rows = {json.loads(r["config"])["lr_search"]: r for r in store.rows()}
    assert rows[False]["lr"] == rows[False]["trained_lr"] == 3.0
    assert rows[True]["lr"] == 3.0 and rows[True]["trained_lr"] < 3.0


def test_a_cell_failing_in_training_leaves_the_shared_model_clean(tiny_dir, tmp_path):
    # lr 1e39 is beyond float32: AdamW fails at its first update, after the adapter is attached
    config = write_sweep(tmp_path / "s.yaml", tiny_dir, {"lr": [1e39, 0.01]}, length=8, epochs=2)
    store = ResultsStore(tmp_path / "r.db")
    report = run_sweep(load_sweep(config), store)
    assert (report.done, report.failed) == (1, 1)
    (failed,) = store.rows({"status": "failed"})
    assert failed["lr"] == 1e39 and failed["error"].startswith("RuntimeError")
    (done,) = store.rows({"status": "done"})
    clean = write_sweep(tmp_path / "c.yaml", tiny_dir, {"lr": [0.01]}, length=8, epochs=2)
    alone = ResultsStore(tmp_path / "alone.db")
    run_sweep(load_sweep(clean), alone)
    assert done["initial_loss"] == pytest.approx(alone.rows()[0]["initial_loss"])
    assert done["final_loss"] == pytest.approx(alone.rows()[0]["final_loss"], rel=1e-5)


def test_workers_on_the_command_line_run_cells_in_that_many_processes(tiny_dir, tmp_path, cli):
    config = write_sweep(tmp_path / "s.yaml", tiny_dir, {"length": [8, 10, 12, 14]}, epochs=30)
    db = tmp_path / "r.db"
    code, out, err = cli("sweep", str(config), "--store", str(db), "--workers", "2", "--quiet")
    assert code == 0, err
    rows = ResultsStore(db).rows()
    workers = {row["worker"] for row in rows}
    assert len(rows) == 4 and {row["status"] for row in rows} == {"done"}
    assert len(workers) == 2, f"expected 2 worker processes, saw {workers}"
    assert not any(w.endswith(f":{os.getpid()}") for w in workers), "cells ran in the driver, not in workers"


def test_a_store_from_before_a_column_existed_gains_it_filled_from_each_config(tiny_dir, tmp_path):
    db = tmp_path / "old.db"
    config = write_sweep(tmp_path / "s.yaml", tiny_dir, {"length": [8]}, epochs=1, lr=0.03)
    run_sweep(load_sweep(config), ResultsStore(db))
    with ResultsStore(db) as store:  # as a store from before the worker and lr columns
        store.db.execute("ALTER TABLE cells DROP COLUMN worker")
        store.db.execute("ALTER TABLE cells DROP COLUMN lr")
    (row,) = ResultsStore(db).rows({"lr": "0.03"})
    assert row["lr"] == 0.03 and row["worker"] is None  # settings come back from the config; who ran it is unknown
    config = write_sweep(tmp_path / "s.yaml", tiny_dir, {"length": [8, 10]}, epochs=1, lr=0.03)
    run_sweep(load_sweep(config), ResultsStore(db))
    new = ResultsStore(db).rows({"length": "10"})[0]
    assert new["worker"].endswith(f":{os.getpid()}")


def test_cell_keys_are_stable_across_versions():
    """Keys computed by memlaw 0.1.0's first store: a changed key would orphan every stored cell."""
    from memlaw.probe import ProbeConfig

    assert cell_key(ProbeConfig(data="longcontext", length=32, rank=4)) == "edc825c61b06db812cf2"
    skip = ProbeConfig(data="phonebook", length=20, rank=2, method="memft-ot", method_options={"fallback": "skip"})
    assert cell_key(skip) == cell_key(replace(skip, device="cpu")) == "45289cc2194b96146f82"


def test_every_probe_setting_is_declared_with_its_help_and_roles():
    from dataclasses import fields

    from memlaw.probe import ProbeConfig

    for f in fields(ProbeConfig):
        assert f.metadata.get("help") and "key" in f.metadata, f"{f.name}: declare it with memlaw.config.setting(...)"


def test_workers_belong_to_the_local_backend(tiny_dir, tmp_path):
    config = write_sweep(tmp_path / "s.yaml", tiny_dir, {"length": [8]}, epochs=1)
    with pytest.raises(MemlawInputError, match="workers= is for the local backend"):
        run_sweep(load_sweep(config), ResultsStore(tmp_path / "r.db"), backend="ray", workers=2)


def test_set_fixes_a_setting_on_top_of_the_config(tiny_dir, tmp_path, cli):
    config = write_sweep(tmp_path / "s.yaml", tiny_dir, {"rank": [1, 2]}, length=6, epochs=1)
    db = str(tmp_path / "r.db")
    code, out, err = cli(
        "sweep", str(config), "--store", db, "--quiet", "--set", "epochs=3", "--set", "until=certified"
    )
    assert code == 0, err
    rows = ResultsStore(db).rows()
    assert [json.loads(r["config"])["epochs"] for r in rows] == [3, 3] and {r["until"] for r in rows} == {"certified"}
    for argv, message in (
        (["--set", "rank=3"], "--set rank: 'rank' is an axis"),
        (["--set", "epochs"], "--set needs SETTING=VALUE"),
        (["--set", "epochs=many"], "setting 'epochs' must be an integer"),
    ):
        code, _, err = cli("sweep", str(config), "--store", str(tmp_path / "x.db"), *argv)
        assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
        assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize(
    ("stop", "status", "word"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],  # Ctrl-C; docker stop, Slurm
)
def test_ctrl_c_or_sigterm_mid_sweep_keeps_finished_cells_and_says_how_to_resume(
    tiny_dir, tmp_path, stop, status, word
):
    config = write_short_then_endless(tmp_path / "s.yaml", tiny_dir, [1, 2], [3, 4])
    db = tmp_path / "r.db"
    command = [sys.executable, "-m", "memlaw.cli.main", "sweep", str(config), "--store", str(db), "--quiet"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_for_cells(db, 2) == 2
    proc.send_signal(stop)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and word in lines[0] and "run the same command again to resume" in lines[0]
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store = ResultsStore(db)
    kept = store.rows()
    assert stored_seeds(kept) == [1, 2] and "keeps the 2 finished cells" in lines[0]
    assert all(r["status"] == "done" and r["final_loss"] is not None for r in kept)  # complete, or not there
    report = resume_short_cells(tmp_path, tiny_dir, store, [1, 2])
    assert (report.skipped, report.done) == (2, 1) and len(store.rows()) == 3


def sweep_command(config, db, *extra):
    return [sys.executable, "-m", "memlaw.cli.main", "sweep", str(config), "--store", str(db), "--quiet", *extra]


def lease_rows(db) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT cell_key, holder, pid FROM leases").fetchall()


def test_two_drivers_on_one_store_train_each_cell_once(tiny_dir, tmp_path):
    config = write_sweep(tmp_path / "s.yaml", tiny_dir, {"data_seed": [1, 2, 3, 4, 5, 6]}, length=64, epochs=40)
    db = tmp_path / "r.db"
    ResultsStore(db).close()  # both find the store made
    drivers = [subprocess.Popen(sweep_command(config, db), stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [driver.communicate(timeout=300)[0] for driver in drivers]
    assert [driver.returncode for driver in drivers] == [0, 0], outputs
    trained = [int(re.search(r"(\d+) done", out).group(1)) for out in outputs]
    assert sum(trained) == 6, outputs  # without leases each driver trains all 6
    for out, mine in zip(outputs, trained, strict=True):  # each waits for the other's cells, and says so
        assert mine == 6 or f"{6 - mine} by another driver" in out, out
    rows = ResultsStore(db).rows()
    assert len(rows) == 6 and {r["status"] for r in rows} == {"done"} and lease_rows(db) == []


def test_a_killed_drivers_leases_are_taken_over_at_once(tiny_dir, tmp_path):
    config = write_short_then_endless(tmp_path / "s.yaml", tiny_dir, [1], [2])
    db = tmp_path / "r.db"
    proc = subprocess.Popen(sweep_command(config, db), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_for_cells(db, 1) == 1
    deadline = time.time() + 60
    while time.time() < deadline and not lease_rows(db):  # the endless cell claimed, in flight
        time.sleep(0.05)
    proc.kill()  # SIGKILL: its lease on the cell in flight stays behind
    proc.wait()
    assert {pid for _, _, pid in lease_rows(db)} == {proc.pid}
    (endless,) = [key for key, _, _ in lease_rows(db)]
    # its lease runs for most of a minute yet, but a dead process of this host holds nothing:
    # another driver takes the cell over at once
    with Leases(db) as leases:
        assert leases.claim([endless]) == ({endless}, set())
        assert [holder for _, holder, _ in lease_rows(db)] == [leases.holder]
    assert lease_rows(db) == []


def test_a_live_lease_is_waited_for_until_it_expires(tiny_dir, tmp_path):
    config = write_sweep(tmp_path / "s.yaml", tiny_dir, {"data_seed": [1, 2]}, length=8, epochs=2)
    store = ResultsStore(tmp_path / "r.db")
    first = cell_key(load_sweep(config).cells()[0])
    # a driver on another host holds the first cell for 3 more seconds, and then stops renewing
    with store.db:
        store.db.execute("INSERT INTO leases VALUES (?, 'elsewhere:1:ab', 'elsewhere', 1, ?)", (first, time.time() + 3))
    started = time.time()
    report = run_sweep(load_sweep(config), store)
    assert report.done == 2 and time.time() - started >= 3
    assert {r["cell_key"] for r in store.rows()} >= {first} and lease_rows(store.path) == []


def test_ctrl_c_with_workers_stops_them_releases_the_leases_and_resumes(tiny_dir, tmp_path):
    # two workers, each with a short cell and then an endless one: the signal lands mid-training
    config = write_short_then_endless(tmp_path / "s.yaml", tiny_dir, [1, 2], [3, 4])
    db = tmp_path / "r.db"
    proc = subprocess.Popen(sweep_command(config, db, "--workers", "2"), stderr=subprocess.PIPE, text=True)
    assert wait_for_cells(db, 2) == 2
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "run the same command again to resume" in lines[0], err
    store = ResultsStore(db)
    kept = store.rows()
    assert stored_seeds(kept) == [1, 2] and lease_rows(db) == []
    for pid in {int(r["worker"].rsplit(":", 1)[1]) for r in kept}:  # the workers are stopped, not orphaned
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    report = resume_short_cells(tmp_path, tiny_dir, store, [1, 2])
    assert (report.skipped, report.done) == (2, 1)


def test_a_late_failure_never_replaces_a_stored_result(tiny_dir, tmp_path):
    """A driver whose lease was taken over may still fail the cell after the other stored it."""
    config = write_sweep(tmp_path / "s.yaml", tiny_dir, {"length": [8]}, epochs=1)
    store = ResultsStore(tmp_path / "r.db")
    run_sweep(load_sweep(config), store)
    (cell,) = load_sweep(config).cells()
    store.add_failure(cell, "out of memory: the other driver's process still holds the GPU")
    (row,) = store.rows()
    assert row["status"] == "done" and row["final_loss"] is not None
