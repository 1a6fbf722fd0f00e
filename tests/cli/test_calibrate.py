"""memlaw calibrate on a tiny model: the standard sweep scaled to the model, resumable, fitted
into the law that memlaw plan --model finds."""

import json

import pytest

from memlaw.law.library import user_law_path
from memlaw.sweep.store import ResultsStore

#: A coarse plateau rule makes the tiny cells converge within seconds.
QUICK = [
    "--set",
    "max_steps=300",
    "--set",
    "plateau_steps=10",
    "--set",
    "plateau_tol=0.5",
    "--bootstrap",
    "50",
    "--quiet",
]


def test_calibrate_sweeps_fits_and_writes_the_law_plan_finds(cli, tiny_dir, tmp_path):
    store = tmp_path / "calibration.db"
    bypass = ("calibrate", "--model", tiny_dir, "--placement", "bypass", "--store", str(store))
    code, out, err = cli(*bypass, "--budget-minutes", "1e-9", *QUICK)
    assert code == 2 and "0 cells finished, too few for a law" in err and "run the calibration again" in err
    assert "time budget spent after 0 of 16 groups" in out
    assert not user_law_path(tiny_dir).exists()

    code, out, err = cli(*bypass, *QUICK)
    assert code == 0, err
    assert "group 1/16: 1 done, 0 stored before" in out  # lengths 24, 32, 48 all scale to the floor of 8
    first = user_law_path(tiny_dir).read_text()
    code, out, err = cli(*bypass, *QUICK)
    assert code == 0 and "group 16/16: 0 done, 2 stored before" in out  # resumed, nothing repeated
    assert user_law_path(tiny_dir).read_text() == first
    with ResultsStore(store) as results:
        rows = results.rows({"status": "done"})
    configs = [json.loads(row["config"]) for row in rows]
    # 4 layers: the bypass two below the top; width 64 of 576: lengths scaled, at least 8
    assert {c["layer"] for c in configs} == {2} and {c["ratio"] for c in configs} == {0.0, 0.3, 1.0}
    assert sorted({c["length"] for c in configs if c["ratio"] == 1.0}) == [8, 11, 14, 21]
    law = json.loads(user_law_path(tiny_dir).read_text())
    assert law["fit"]["form"] in ("initial", "excess") and law["provenance"]["model"] == tiny_dir
    assert f"law form: {law['fit']['form']} (lowest held-out error" in out
    code, out, err = cli(
        "plan", "--model", tiny_dir, "--placement", "bypass", "--rank", "2", "--initial-loss", "5", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["law"] == str(user_law_path(tiny_dir))


def test_calibrate_a_peft_law_for_what_train_trains(cli, tiny_dir, tmp_path):
    store = tmp_path / "calibration.db"
    code, out, err = cli("calibrate", "--model", tiny_dir, "--store", str(store), *QUICK)  # peft by default
    assert code == 0, err
    configs = [json.loads(row["config"]) for row in ResultsStore(store).rows({"status": "done"})]
    assert {c["placement"] for c in configs} == {"peft"} and {c["layer"] for c in configs} == {2}
    assert {tuple(c["target_modules"]) for c in configs} == {("gate_proj", "up_proj", "down_proj")}
    law = json.loads(user_law_path(tiny_dir, "peft").read_text())
    assert law["reference"]["layers"] == 4 and law["reference"]["max_rank"] == 64
    assert not user_law_path(tiny_dir).exists()  # the bypass law is another file
    # plans default to this law, and its train command is memlaw train's defaults with a rank
    facts = tmp_path / "facts.jsonl"
    facts.write_text('{"key": "Ada", "value": "7731"}\n{"key": "Bo", "value": "52-9"}\n')
    code, out, err = cli("plan", "--model", tiny_dir, "--data", str(facts), "--json", "--quiet")
    assert code == 0, err
    plan = json.loads(out)
    assert plan["law"] == str(user_law_path(tiny_dir, "peft")) and plan["adapter"]["placement"] == "peft"
    flags = {word for word in plan["train_command"].split() if word.startswith("--")}
    assert flags <= {"--out", "--rank", "--model", "--max-steps", "--plateau-steps", "--plateau-tol"}, flags


def test_library_calibration_on_the_cli_store_fits_the_cli_law_and_plans_alike(cli, tiny_dir, tmp_path):
    import memlaw

    store = tmp_path / "calibration.db"
    code, out, err = cli("calibrate", "--model", tiny_dir, "--store", str(store), *QUICK)
    assert code == 0, err
    settings = {"max_steps": 300, "plateau_steps": 10, "plateau_tol": 0.5}
    lines = []
    law = memlaw.calibrate(
        tiny_dir, store=store, out=tmp_path / "law.json", overrides=settings, bootstrap=50, log=lines.append
    )
    assert all(" 0 done" in line for line in lines if line.startswith("group "))  # every cell was stored
    written = json.loads((tmp_path / "law.json").read_text())
    assert written == json.loads(user_law_path(tiny_dir, "peft").read_text())  # the CLI's law, to the digit
    facts = tmp_path / "facts.jsonl"
    facts.write_text('{"key": "Ada", "value": "7731"}\n{"key": "Bo", "value": "52-9"}\n')
    code, out, err = cli("plan", "--model", tiny_dir, "--data", str(facts), "--json", "--quiet")
    assert code == 0, err
    plan = memlaw.plan(data=facts, model=tiny_dir)
    assert plan.rank == json.loads(out)["rank"] and plan.train_command() == json.loads(out)["train_command"]
    assert law.form == written["fit"]["form"]
    assert memlaw.load_law(tiny_dir, "peft").predict(2, 20, 5.0) == pytest.approx(law.predict(2, 20, 5.0))
