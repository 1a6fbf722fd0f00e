"""memlaw from Python: the four verbs give the command line's numbers, on real files and models."""

import json
from pathlib import Path

import pytest
from peft import LoraConfig, PeftModel

import memlaw
from memlaw.errors import MemlawInputError

ROOT = Path(__file__).resolve().parents[2]
#: Every data file shipped with memlaw's examples and benchmarks.
DATA_FILES = sorted(
    path
    for folder in (ROOT / "examples", ROOT / "benchmarks" / "data")
    for path in folder.rglob("*")
    if path.suffix in (".jsonl", ".csv", ".parquet", ".txt")
)
RECORDS = [{"key": "Ada", "value": "7381"}, {"key": "Bo", "value": "52-9"}, {"key": "Cy", "value": "x0q"}]


def as_json(record: dict) -> dict:
    """``record`` as printed JSON reads back (tuples become lists)."""
    return json.loads(json.dumps(record))


def test_the_data_files_are_found():
    assert {path.name for path in DATA_FILES} >= {"contacts.jsonl", "chat.jsonl", "code.txt", "prose.txt"}


@pytest.mark.slow
@pytest.mark.parametrize("placement", ["peft", "bypass"])
@pytest.mark.parametrize("path", DATA_FILES, ids=lambda path: path.name)
def test_library_and_cli_plan_every_shipped_file_alike(path, placement, cli):
    code, out, err = cli("plan", "--data", str(path), "--placement", placement, "--json", "--quiet")
    assert code == 0, err
    printed = json.loads(out)
    plan = memlaw.plan(data=path, placement=placement)
    assert isinstance(plan.rank, int) and plan.rank == printed["rank"]
    assert as_json(plan.to_dict()) == printed
    if placement == "bypass":  # the paper's instrument: no PEFT config to give
        with pytest.raises(MemlawInputError, match="needs a law calibrated on PEFT LoRA"):
            plan.lora_config()
        return
    config = plan.lora_config()
    assert isinstance(config, LoraConfig) and config.r == plan.rank
    assert sorted(config.target_modules) == printed["adapter"]["target_modules"]
    assert config.layers_to_transform == [printed["adapter"]["layer"]]


def test_a_plan_for_a_length_is_the_cli_plan_and_writes_a_peft_config_peft_loads(cli, tmp_path):
    code, out, err = cli("plan", "--length", "500", "--ratio", "1", "--json")
    assert code == 0, err
    plan = memlaw.plan(length=500, ratio=1)
    assert as_json(plan.to_dict()) == json.loads(out)
    assert plan.rank == json.loads(out)["rank"] and plan.interval[0] <= plan.rank
    assert plan.training_settings()["lr"] == memlaw.api.TRAIN_DEFAULTS["lr"]
    folder = plan.write_peft(tmp_path / "peft")
    assert LoraConfig.from_pretrained(str(folder)).r == plan.rank
    assert json.loads((folder / "training.json").read_text())["plan"]["rank"] == plan.rank


def test_library_errors_name_arguments_and_the_cli_names_flags(cli):
    with pytest.raises(MemlawInputError, match="pass ratio= or initial_loss="):
        memlaw.plan(length=500)
    code, _, err = cli("plan", "--length", "500")
    assert code == 2 and "pass --ratio or --initial-loss" in err
    with pytest.raises(MemlawInputError, match="say what to plan"):
        memlaw.plan()


def test_train_certifies_saves_and_refuses_a_used_folder_before_training(tiny_dir, tmp_path):
    data = tmp_path / "facts.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    out = tmp_path / "adapter"
    result = memlaw.train(
        data, out=out, model=tiny_dir, layer="all", rank=16, target_modules=["q_proj", "v_proj", "down_proj"],
        method="memft-ot", lr=0.02, lr_search=False, until="certified", epochs=300,
    )  # fmt: skip
    assert result.certified and result.steps < 300 and result.exact_match == 1.0
    assert len(result.items) == 3 and result.seconds > 0
    assert json.loads((out / "recall.json").read_text())["certified"]
    base = memlaw.models.load_model(tiny_dir).model
    assert isinstance(PeftModel.from_pretrained(base, str(out)), PeftModel)
    with pytest.raises(MemlawInputError, match="already exists and is not an empty folder"):
        memlaw.train(data, out=out, model=tiny_dir)
    with pytest.raises(MemlawInputError, match="unknown setting 'rnak'"):
        memlaw.train(data, model=tiny_dir, rnak=2)


def python_blocks(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return [block.split("```", 1)[0] for block in text.split("```python\n")[1:]]


def test_the_api_page_examples_parse_and_the_planning_one_runs(capsys):
    blocks = python_blocks(ROOT / "docs" / "api.md")
    assert len(blocks) >= 3
    for block in blocks:
        compile(block, "docs/api.md", "exec")
    exec(blocks[0], {})  # plans from the packaged law: no model, no training
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split()[0] == str(memlaw.plan(length=500, ratio=1.0).rank)


HOSTILE_CALLS = {
    "missing data file": (lambda tmp: memlaw.train(tmp / "nope.jsonl", out=tmp / "o"), "no such data file"),
    "data that is a folder": (lambda tmp: memlaw.plan(data=tmp), "is a folder, not a file"),
    "unknown setting": (lambda tmp: memlaw.train(tmp / "facts.jsonl", rnak=2), "unknown setting 'rnak'"),
    "rank of the wrong type": (lambda tmp: memlaw.train(tmp / "facts.jsonl", rank="two"), "rank"),
    "zero length": (lambda tmp: memlaw.plan(length=0, ratio=1.0), "at least one token"),
    "length and rank": (lambda tmp: memlaw.plan(length=10, rank=2), "give length or rank, not both"),
    "data and length": (lambda tmp: memlaw.plan(data=tmp / "facts.jsonl", length=5), "data= measures the length"),
    "confidence above 1": (lambda tmp: memlaw.plan(length=10, ratio=1.0, confidence=1.5), "between 0 and 1"),
    "missing law file": (lambda tmp: memlaw.plan(length=10, law=tmp / "law.json"), "no such law file"),
    "law that is not a law": (lambda tmp: memlaw.plan(length=10, law=tmp / "facts.jsonl"), "not a law written by"),
    "unknown model": (lambda tmp: memlaw.load_law("no-such-model"), "no calibrated peft law for model"),
    "another adapter": (lambda tmp: memlaw.plan(length=10, ratio=1.0, layer="3"), "was calibrated on PEFT LoRA"),
    "out that is a used folder": (lambda tmp: memlaw.train(tmp / "facts.jsonl", out=tmp), "not an empty folder"),
    "calibrate to an unknown placement": (lambda tmp: memlaw.calibrate(placement="nope"), "placement='nope'"),
}


@pytest.mark.parametrize("case", HOSTILE_CALLS)
def test_hostile_calls_raise_one_clear_line_and_write_nothing(case, tmp_path):
    (tmp_path / "facts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    before = sorted(p.name for p in tmp_path.rglob("*"))
    call, message = HOSTILE_CALLS[case]
    with pytest.raises(MemlawInputError, match=message) as raised:
        call(tmp_path)
    assert "\n" not in str(raised.value)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
