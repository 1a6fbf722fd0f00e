"""Plans checked by training (--verify), their track record, and where plans find their law."""

import json
import shlex
import shutil

import numpy as np
import pytest

from memlaw.io import write_json_atomic
from memlaw.law.fit import MemoryLaw
from memlaw.law.library import user_law_path
from memlaw.models.loading import DEFAULT_MODEL
from memlaw.probe import ProbeConfig
from memlaw.probe.run import run_probe

RECORDS = [{"key": "Ada", "value": "7731"}, {"key": "Bo", "value": "52-9"}, {"key": "Cy", "value": "x0q"}]
#: How the law's (synthetic) probes trained: a verification must train exactly so.
BUDGET = {"placement": "bypass", "layer": 2, "method": "sft", "lr": 0.02, "until": "converged", "max_steps": 300}


@pytest.fixture()
def facts(tmp_path):
    path = tmp_path / "facts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    return str(path)


def tiny_law(tiny_dir) -> MemoryLaw:
    rank, length = (a.ravel().astype(float) for a in np.meshgrid([1, 2, 4, 8], [8, 16, 32, 64]))
    delta = 8.0 * rank**0.5 * length**-0.3 + 0.2  # the tiny facts (initial loss ~11) plan a rank near 10
    law = MemoryLaw(bootstrap=20).fit(rank, length, delta)
    law.provenance_ = {"model": tiny_dir, "prompt_format": "raw", **BUDGET}
    law.reference_ = {"initial_loss": [{"ratio": 1.0, "length": 8.0, "initial_loss": 11.0}], "params_per_rank": 128.0}
    return law


@pytest.fixture()
def law_file(tmp_path, tiny_dir):
    path = tmp_path / "law.json"
    write_json_atomic(path, tiny_law(tiny_dir).to_dict())
    return str(path)


def test_verify_trains_the_plan_with_the_laws_budget_and_keeps_a_track_record(cli, facts, law_file, tiny_dir, tmp_path):
    code, out, err = cli("plan", "--law", law_file, "--data", facts, "--verify", "--json", "--quiet")
    assert code == 0, err
    plan = json.loads(out)
    verified = plan["verified"]
    assert verified["rank"] == plan["rank"] and verified["length"] == plan["length"]
    assert verified["predicted_final_loss"] == plan["predicted_final_loss"]
    assert verified["initial_loss"] == pytest.approx(plan["initial_loss"], rel=1e-5)
    # the same probe run by hand with the law's settings measures the same: nothing else differs
    alone = run_probe(ProbeConfig(model=tiny_dir, data=facts, prompt_format="raw", rank=int(plan["rank"]), **BUDGET))
    assert verified["final_loss"] == pytest.approx(alone.final_loss, rel=1e-5)
    assert (verified["steps"], verified["certified"]) == (alone.steps, alone.certified)
    assert plan["track_record"] == {"model": tiny_dir, "verified": 1, "certified": int(alone.certified)}

    # the plan's train command (memlaw train with the law's budget) trains that same adapter
    words = shlex.split(plan["train_command"])
    assert words[:2] == ["memlaw", "train"] and "--rank" in words and "--method" in words
    words[words.index("ADAPTER_DIR")] = str(tmp_path / "adapter")
    code, _, err = cli(*words[1:], "--quiet")
    assert code == 0, err
    trained = json.loads((tmp_path / "adapter" / "recall.json").read_text())
    assert trained["final_loss"] == pytest.approx(verified["final_loss"], rel=1e-5)
    assert trained["steps"] == verified["steps"]

    code, text, err = cli("plan", "--law", law_file, "--length", "20")
    assert code == 0, err
    assert f"1 verified plans on this model: {int(alone.certified)} certified" in text
    code, text, _ = cli("plan", "--law", law_file, "--data", facts, "--verify", "--quiet")
    assert code == 0 and "verified: predicted against measured at rank" in text
    assert "2 verified plans on this model" in text


def test_a_foreign_sqlite_file_is_refused_before_anything_is_written(cli, law_file, tmp_path):
    import sqlite3

    foreign = tmp_path / "other.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE cells (id INTEGER)")
    before = foreign.read_bytes()
    code, out, err = cli("plan", "--law", law_file, "--length", "20", "--track-record", str(foreign))
    assert code == 2 and "without a verified_plans table" in err and len(err.strip().splitlines()) == 1
    assert foreign.read_bytes() == before and out == ""


def test_plans_find_the_law_calibrated_for_their_model(cli, tiny_dir, tmp_path):
    code, _, err = cli("plan", "--model", tiny_dir, "--length", "20")
    assert code == 2 and "no calibrated law for model" in err and "memlaw calibrate" in err
    target = user_law_path(tiny_dir)
    target.parent.mkdir(parents=True)
    write_json_atomic(target, tiny_law(tiny_dir).to_dict())
    code, out, err = cli("plan", "--model", tiny_dir, "--length", "20", "--json")
    assert code == 0, err
    assert json.loads(out)["law"] == str(target)


def test_the_default_model_plans_with_its_packaged_law(cli):
    code, out, err = cli("plan", "--length", "96", "--ratio", "1", "--json")
    assert code == 0, err
    plan = json.loads(out)
    assert plan["law"] == f"the law packaged with memlaw for {DEFAULT_MODEL}" and plan["rank"] >= 1
    assert plan["track_record"]["model"] == DEFAULT_MODEL


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--length", "20", "--verify"], "--verify and --fields need --data FILE"),
        (["--data", "FACTS", "--rank", "2", "--verify"], "--verify checks a planned rank: drop --rank"),
        (["--length", "20", "--out", "FOLDER"], "is a folder: give a file name"),
    ],
)
def test_bad_verify_and_output_options_are_one_line(cli, law_file, facts, tmp_path, argv, message):
    argv = [{"FACTS": facts, "FOLDER": str(tmp_path)}.get(a, a) for a in argv]
    code, out, err = cli("plan", "--law", law_file, *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not shutil.os.path.exists(tmp_path / "memlaw-home" / "track-record.db")


def test_plans_aim_for_certification_when_the_law_can_tell_its_probability(cli, tiny_dir, tmp_path, law_file):
    from memlaw.law.certify import margin_for_confidence

    law = tiny_law(tiny_dir)
    law.certification_ = {"predictor": "capacity margin", "intercept": -15.0, "slope": 12.0, "cells": 20,
                          "certified": 8, "margin_range": [0.5, 1.8]}  # fmt: skip
    path = tmp_path / "certifying-law.json"
    write_json_atomic(path, law.to_dict())
    code, out, err = cli("plan", "--law", str(path), "--length", "20", "--initial-loss", "6", "--json")
    assert code == 0, err
    plan = json.loads(out)
    margin = margin_for_confidence(law.certification_, 0.9)
    assert plan["confidence"] == 0.9 and plan["target_margin"] == pytest.approx(margin)
    assert 6 - plan["predicted_final_loss"] >= margin * (6 - np.log(2)) and plan["certify_probability"] >= 0.9
    code, text, _ = cli("plan", "--law", str(path), "--length", "20", "--initial-loss", "6")
    assert text.startswith("planned to certify recall with probability 90%")
    assert "probability that training at this rank certifies recall" in text
    code, out, _ = cli(
        "plan", "--law", str(path), "--length", "20", "--initial-loss", "6", "--target-loss", "0.5", "--json"
    )
    mean_plan = json.loads(out)
    assert mean_plan["confidence"] is None and mean_plan["target_loss"] == 0.5 and mean_plan["rank"] <= plan["rank"]
    # a law without a certification model plans for a mean below ln 2, and cannot take --confidence
    code, out, _ = cli("plan", "--law", law_file, "--length", "20", "--json")
    assert json.loads(out)["confidence"] is None and json.loads(out)["target_loss"] == pytest.approx(np.log(2))
    code, _, err = cli("plan", "--law", law_file, "--length", "20", "--confidence", "0.8")
    assert code == 2 and "no certification model" in err
