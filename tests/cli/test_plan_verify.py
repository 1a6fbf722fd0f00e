"""Plans checked by training (--verify), their track record, and where plans find their law."""

import json
import shlex
import shutil

import numpy as np
import pytest

from memlaw.constants import MLP_MODULES
from memlaw.io import write_json_atomic
from memlaw.law.fit import MemoryLaw
from memlaw.law.library import user_law_path
from memlaw.law.state import Provenance, Reference
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


#: A law calibrated on PEFT LoRA on the MLP of layer 2 of the tiny model's 4.
PEFT_BUDGET = {**BUDGET, "placement": "peft", "target_modules": ["gate_proj", "up_proj", "down_proj"]}


def tiny_law(tiny_dir, budget=BUDGET) -> MemoryLaw:
    rank, length = (a.ravel().astype(float) for a in np.meshgrid([1, 2, 4, 8], [8, 16, 32, 64]))
    delta = 8.0 * rank**0.5 * length**-0.3 + 0.2  # the tiny facts (initial loss ~11) plan a rank near 10
    law = MemoryLaw(bootstrap=20).fit(rank, length, delta)
    law.provenance_ = Provenance({"model": tiny_dir, "prompt_format": "raw", **budget})
    law.reference_ = Reference([{"ratio": 1.0, "length": 8.0, "initial_loss": 11.0}], params_per_rank=128.0, layers=4)
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
    # the same probe run by hand with the law's settings, as memlaw train trains (end tokens, the
    # rate searched around the law's), measures the same: nothing else differs
    alone = run_probe(
        ProbeConfig(
            model=tiny_dir, data=facts, prompt_format="raw", rank=int(plan["rank"]), **BUDGET, end_token=True,
            lr_search=True,
        )
    )  # fmt: skip
    assert verified["final_loss"] == pytest.approx(alone.final_loss, rel=1e-5)
    assert (verified["steps"], verified["certified"]) == (alone.steps, alone.certified)
    record = {"model": tiny_dir, "placement": "bypass", "verified": 1, "certified": int(alone.certified)}
    assert plan["track_record"] == record

    # the plan's train command (memlaw train with the law's budget) trains that same adapter
    words = shlex.split(plan["train_command"])
    assert words[:2] == ["memlaw", "train"] and "--rank" in words and "--placement" in words and "--lr" in words
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
    # the track record is kept per adapter: plans for the PEFT law on this model have none yet
    peft_law = tmp_path / "peft-law.json"
    write_json_atomic(peft_law, tiny_law(tiny_dir, PEFT_BUDGET).to_dict())
    code, text, _ = cli("plan", "--law", str(peft_law), "--length", "20")
    assert code == 0 and "0 verified plans on this model: 0 certified (peft adapters)" in text


def test_a_foreign_sqlite_file_is_refused_before_anything_is_written(cli, law_file, tmp_path):
    import sqlite3

    foreign = tmp_path / "other.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE cells (id INTEGER)")
    before = foreign.read_bytes()
    code, out, err = cli("plan", "--law", law_file, "--length", "20", "--track-record", str(foreign))
    assert code == 2 and "without a verified_plans table" in err and len(err.strip().splitlines()) == 1
    assert foreign.read_bytes() == before and out == ""


def test_plans_find_the_law_calibrated_for_their_model_and_adapter(cli, tiny_dir, tmp_path):
    code, _, err = cli("plan", "--model", tiny_dir, "--length", "20")
    assert code == 2 and "no calibrated peft law for model" in err and "memlaw calibrate" in err
    for placement, budget in (("bypass", BUDGET), ("peft", PEFT_BUDGET)):
        target = user_law_path(tiny_dir, placement)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(target, tiny_law(tiny_dir, budget).to_dict())
    # plans are for what memlaw train trains unless told otherwise
    for extra, placement in (([], "peft"), (["--placement", "bypass"], "bypass"), (["--placement", "peft"], "peft")):
        code, out, err = cli("plan", "--model", tiny_dir, "--length", "20", "--json", *extra)
        assert code == 0, err
        plan = json.loads(out)
        assert plan["law"] == str(user_law_path(tiny_dir, placement)) and plan["adapter"]["placement"] == placement
    # the law's own adapter, named in other words, is accepted: layer -2 of 4 is layer 2
    code, out, err = cli(
        "plan",
        "--model",
        tiny_dir,
        "--length",
        "20",
        "--layer",
        "-2",
        "--target-modules",
        "up_proj,gate_proj,down_proj",
    )
    assert code == 0, err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--layer", "all"],
            "calibrated on PEFT LoRA on down_proj, gate_proj, up_proj of layer 2, not on PEFT LoRA on",
        ),
        (["--target-modules", "q_proj,v_proj"], "not on PEFT LoRA on q_proj, v_proj of layer 2"),
        (["--layer", "1"], "--set layer=1 --store NEW.db --out LAW.json"),
        (["--layer", "-5"], "--layer -5 is out of range: the law's model has layers 0..3"),
        (["--placement", "bypass"], "is for the bypass"),
        (["--layer", "two"], "--layer two: give a layer index"),
    ],
)
def test_a_plan_for_another_adapter_than_the_laws_is_refused(cli, tiny_dir, tmp_path, argv, message):
    law = tmp_path / "peft-law.json"
    write_json_atomic(law, tiny_law(tiny_dir, PEFT_BUDGET).to_dict())
    if argv[0] == "--placement":  # a bypass law asked to emit a PEFT config
        write_json_atomic(law, tiny_law(tiny_dir).to_dict())
        argv = ["--emit", "peft", str(tmp_path / "cfg")]
    code, out, err = cli("plan", "--law", str(law), "--length", "20", *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert out == "" and not (tmp_path / "cfg").exists()


def test_emit_peft_writes_a_lora_config_that_peft_loads_and_trains(cli, tiny_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    law = tmp_path / "peft-law.json"
    write_json_atomic(law, tiny_law(tiny_dir, PEFT_BUDGET).to_dict())
    folder = tmp_path / "planned"
    code, out, err = cli("plan", "--law", str(law), "--length", "20", "--emit", "peft", str(folder), "--json")
    assert code == 0, err
    plan = json.loads(out)
    config = LoraConfig.from_pretrained(str(folder))
    assert config.r == plan["rank"] and config.lora_alpha == plan["rank"]  # memlaw's scaling of 1
    assert sorted(config.target_modules) == sorted(PEFT_BUDGET["target_modules"]) and config.layers_to_transform == [2]
    training = json.loads((folder / "training.json").read_text())
    assert training["training"]["lr"] == BUDGET["lr"] and training["training"]["until"] == "converged"
    assert training["plan"]["rank"] == plan["rank"]
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_dir), config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == plan["rank"] * 3 * (64 + 128)  # gate, up and down of one layer: (d + d_ff) per rank
    code, _, err = cli("plan", "--law", str(law), "--length", "20", "--emit", "peft", str(folder))
    assert code == 2 and "not an empty folder" in err


def test_the_default_model_plans_with_its_packaged_law(cli):
    code, out, err = cli("plan", "--length", "96", "--ratio", "1", "--json")
    assert code == 0, err
    plan = json.loads(out)
    assert plan["law"] == f"the peft law packaged with memlaw for {DEFAULT_MODEL}" and plan["rank"] >= 1
    assert plan["adapter"] == {"placement": "peft", "layer": 28, "target_modules": sorted(MLP_MODULES)}
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
