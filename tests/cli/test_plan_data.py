"""memlaw plan --data FILE: a user's file measured by the law's base model, then planned."""

import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from memlaw.models.loading import bf16_autocast_available, resolve_device

RECORDS = [
    {"key": "Ada Byron:", "value": "born 1815 in London, wrote the first program"},
    {"key": "Alan Turing:", "value": "born 1912, proposed the imitation game in 1950"},
    {"key": "Grace Hopper:", "value": "rear admiral, compiler A-0 in 1952, COBOL"},
    {"key": "Edsger Dijkstra:", "value": "shortest paths 1956, semaphores, THE system"},
]


@pytest.fixture()
def facts(tmp_path):
    path = tmp_path / "facts.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in RECORDS) + "\n")
    return str(path)


@pytest.fixture()
def law_file(tiny_law):
    """A law for the tiny model (raw prompts), fitted on synthetic points (initial loss 11)."""
    return tiny_law({"params_per_rank": 128.0})


def hf_item_losses(model_dir):
    """Per record (answer tokens, summed loss) computed with plain transformers, as a reference."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    out = []
    for record in RECORDS:
        prompt = tokenizer(record["key"]).input_ids
        answer = tokenizer(record["value"], add_special_tokens=False).input_ids
        ids = torch.tensor([prompt + answer])
        with torch.no_grad():
            logits = model(ids).logits[0, len(prompt) - 1 : -1]
        loss = torch.nn.functional.cross_entropy(logits.double(), ids[0, len(prompt) :], reduction="sum")
        out.append((len(answer), float(loss)))
    return np.array(out)


def test_plan_for_a_file_measures_its_length_and_initial_loss(cli, facts, law_file, tiny_dir, tmp_path):
    path, law = law_file
    code, out, err = cli("plan", "--law", path, "--data", facts, "--json", "--out", str(tmp_path / "plan.json"))
    assert code == 0, err
    plan = json.loads(out)
    reference = hf_item_losses(tiny_dir)
    length, initial = reference[:, 0].sum(), reference[:, 1].sum() / reference[:, 0].sum()
    assert plan["length"] == plan["file_length"] == length and plan["items"] == len(RECORDS)
    assert plan["initial_loss"] == pytest.approx(initial, rel=1e-4)
    # the smallest whole rank below ln 2 at this length and initial loss
    assert initial - law.predict(plan["rank"], length) < np.log(2) <= initial - law.predict(plan["rank"] - 1, length)
    assert plan["predicted_final_loss"] == pytest.approx(initial - law.predict(plan["rank"], length))
    low, high = plan["rank_interval"]
    assert low <= plan["rank"] <= high + 1
    assert "predicted_steps" in plan and isinstance(plan["warnings"], list)
    assert json.loads((tmp_path / "plan.json").read_text()) == plan

    code, text, _ = cli("plan", "--law", path, "--data", facts)
    assert code == 0 and f"{len(RECORDS)} items, {int(length)} answer tokens" in text
    assert f"rank {plan['rank']:g} holds {int(length)} tokens" in text


def test_a_rank_holds_the_leading_items_the_law_predicts(cli, facts, law_file, tiny_dir):
    path, law = law_file
    reference = hf_item_losses(tiny_dir)
    lengths = np.cumsum(reference[:, 0])
    initial = np.cumsum(reference[:, 1]) / lengths
    held = []
    for rank in (1, 2, 4, 64):
        code, out, err = cli("plan", "--law", path, "--data", facts, "--rank", str(rank), "--json")
        assert code == 0, err
        plan = json.loads(out)
        fits = initial - law.predict(np.full_like(lengths, rank), lengths) < np.log(2)
        expected = int(np.flatnonzero(fits)[-1]) + 1 if fits.any() else 0
        assert plan["items_held"] == expected
        held.append(expected)
    assert held == sorted(held) and held[0] < len(RECORDS) == held[-1]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--length", "10"], "drop --length"),
        (["--ratio", "1"], "drop --length, --ratio"),
        ([], "data file not found"),
    ],
)
def test_bad_plan_data_input_is_one_line_and_exit_2(cli, facts, law_file, tmp_path, extra, message):
    path, _ = law_file
    data = str(tmp_path / "missing.jsonl") if not extra else facts
    code, out, err = cli("plan", "--law", path, "--data", data, *extra)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert out == ""


def test_plan_without_a_question_says_what_to_ask(cli, law_file):
    code, _, err = cli("plan", "--law", law_file[0])
    assert code == 2 and "--length N, --rank R or --data FILE" in err


def test_plan_reads_csv_parquet_and_conversations_as_train_would(cli, law_file, tiny_dir, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path, _ = law_file
    (tmp_path / "facts.csv").write_text(
        "name,fact\n" + "".join(f'"{r["key"]}","{r["value"]}"\n' for r in RECORDS), encoding="utf-8"
    )
    pq.write_table(pa.table({"name": [r["key"] for r in RECORDS], "fact": [r["value"] for r in RECORDS]}),
                   tmp_path / "facts.parquet")  # fmt: skip
    chats = [{"messages": [{"role": "user", "content": r["key"]}, {"role": "assistant", "content": r["value"]}]}
             for r in RECORDS]  # fmt: skip
    (tmp_path / "facts.jsonl").write_text("".join(json.dumps(c) + "\n" for c in chats), encoding="utf-8")
    reference = hf_item_losses(tiny_dir)  # raw prompts: the key, then the value
    for name, extra in (("facts.csv", ["--fields", "name,fact"]), ("facts.parquet", ["--fields", "name,fact"])):
        code, out, err = cli("plan", "--law", path, "--data", str(tmp_path / name), *extra, "--json")
        assert code == 0, err
        plan = json.loads(out)
        assert plan["items"] == len(RECORDS) and plan["file_length"] == reference[:, 0].sum()
        assert plan["file_initial_loss"] == pytest.approx(reference[:, 1].sum() / reference[:, 0].sum(), rel=1e-4)
    # conversations need the chat format; the law here was fitted on raw prompts
    code, _, err = cli("plan", "--law", path, "--data", str(tmp_path / "facts.jsonl"))
    assert code == 2 and "need the chat prompt format" in err


@pytest.mark.slow
def test_a_fresh_install_plans_a_conversation_file_with_the_packaged_law(cli, tmp_path):
    chats = [{"messages": [{"role": "user", "content": r["key"]}, {"role": "assistant", "content": r["value"]}]}
             for r in RECORDS]  # fmt: skip
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps(c) + "\n" for c in chats), encoding="utf-8")
    code, out, err = cli("plan", "--data", str(data), "--json")
    assert code == 0, err
    plan = json.loads(out)
    assert plan["law"] == "the peft law packaged with memlaw for smollm2-135m-instruct"
    assert plan["items"] == len(RECORDS) and plan["adapter"]["placement"] == "peft"
    assert plan["rank"] >= 1 and 0 < plan["certify_probability"] <= 1 and plan["confidence"] == 0.9
    # memlaw train's defaults are the law's budget: only the rank (and bf16 autocast, where the
    # machine has it, as the law's probes had) are spelled out
    autocast = "--autocast true " if bf16_autocast_available(resolve_device("auto")) else ""
    assert plan["train_command"] == f"memlaw train {data} --out ADAPTER_DIR {autocast}--rank {plan['rank']:g}"
