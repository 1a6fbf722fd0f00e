"""Interactive commands on the default model: a first call (the GGUF file converted) against a
second call (the conversion read from memlaw's cache), beside plain transformers, in one run.

Each timing is a whole command in a fresh process, as a user runs it:

- ``plain transformers``: load the tokenizer and model from the GGUF file and greedily decode 16
  tokens of one chat prompt, nothing else (what any tool built on transformers pays);
- ``memlaw ask``, first call (cache emptied before) and second call;
- ``memlaw plan --data FILE``, first call and second call.

Then one process per state times each phase of ``memlaw ask`` (imports, tokenizer, config,
weights, adapter, decoding), which says where the time goes. Medians of ``--repeats`` runs.
Every measurement is appended to ``--out`` (JSONL) and skipped when the script runs again.

    python benchmarks/model_load.py --out runs/model-load/timings.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

PLAIN = """
import time
from transformers import AutoModelForCausalLM, AutoTokenizer
from memlaw.models.loading import _resolve_source
folder, gguf = _resolve_source("default", None)
tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf)
ids = tokenizer.apply_chat_template([{"role": "user", "content": "Order 1003 ships to:"}],
                                    add_generation_prompt=True, return_tensors="pt")
ids = getattr(ids, "input_ids", ids)
model.generate(ids, attention_mask=ids.new_ones(ids.shape), do_sample=False, max_new_tokens=16)
"""

PHASES = """
import json, sys, time
start = time.perf_counter()
marks = {}
def mark(name):
    marks[name] = time.perf_counter() - start - sum(marks.values())
from memlaw.cli.common import quiet_libraries
quiet_libraries(quiet=True)
from memlaw.data.encoding import encode_items
from memlaw.data.items import MemoryItem
from memlaw.measure.greedy import greedy_reply
from memlaw.models.loading import load_model, load_model_config, load_tokenizer
from memlaw.placements import load_adapter
mark("imports")
tokenizer = load_tokenizer()
mark("tokenizer")
load_model_config()
mark("config")
loaded = load_model(device="cpu", tokenizer=tokenizer)
mark("weights")
load_adapter(loaded.model, sys.argv[1])
mark("adapter")
(item,) = encode_items([MemoryItem("Order 1003 ships to:", "")], tokenizer).items
greedy_reply(loaded.model, tokenizer, list(item.prompt_ids), "chat", 16)
mark("decoding")
print(json.dumps(marks))
"""

RECORDS = [{"key": f"Order {1000 + i} ships to:", "value": f"{i:02d}-{4000 + 37 * i}-XY"} for i in range(12)]


def timed(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return seconds, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="JSONL of timings (resumed when it exists)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each command (default 3)")
    args = parser.parse_args()

    out = Path(args.out)
    work = out.parent / f"{out.stem}-work"
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "cache"
    env = {**os.environ, "MEMLAW_CACHE": str(cache), "MEMLAW_HOME": str(work / "home"), "TQDM_DISABLE": "1"}
    done = {}
    if out.exists():
        for row in map(json.loads, out.read_text(encoding="utf-8").splitlines()):
            done[(row["what"], row["run"])] = row
    data = work / "orders.jsonl"
    data.write_text("".join(json.dumps(record) + "\n" for record in RECORDS), encoding="utf-8")
    adapter = work / "adapter"
    memlaw = [sys.executable, "-m", "memlaw.cli.main"]
    if not adapter.is_dir():
        timed([*memlaw, "probe", "--data", str(data), "--steps", "1", "--save", str(adapter), "--quiet"], env)

    def record(what: str, run: int, seconds: float, **extra) -> None:
        row = {"what": what, "run": run, "seconds": seconds, **extra}
        with out.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
        done[(what, run)] = row
        print(f"{what} run {run}: {seconds:.1f} s", flush=True)

    commands = {
        # 16 tokens, as plain transformers decodes: this adapter, trained one step, never ends its answer
        "ask": [*memlaw, "ask", str(adapter), RECORDS[3]["key"], "--max-new-tokens", "16"],
        "plan --data": [*memlaw, "plan", "--data", str(data), "--quiet"],
    }
    for run in range(args.repeats):
        if ("plain transformers", run) not in done:
            record("plain transformers", run, timed([sys.executable, "-c", PLAIN], env)[0])
        for name, command in commands.items():
            if (f"{name}, first call", run) not in done or (f"{name}, second call", run) not in done:
                shutil.rmtree(cache, ignore_errors=True)
                record(f"{name}, first call", run, timed(command, env)[0])
                record(f"{name}, second call", run, timed(command, env)[0])
        for state in ("first call", "second call"):
            if (f"ask phases, {state}", run) not in done:
                if state == "first call":
                    shutil.rmtree(cache, ignore_errors=True)
                seconds, printed = timed([sys.executable, "-c", PHASES, str(adapter)], env)
                record(f"ask phases, {state}", run, seconds, phases=json.loads(printed))

    print("\n| command | median s | runs |")
    print("|---|---:|---:|")
    medians = {}
    for what in dict.fromkeys(what for what, _ in done):
        runs = [row["seconds"] for (name, _), row in done.items() if name == what]
        medians[what] = statistics.median(runs)
        print(f"| {what} | {medians[what]:.1f} | {len(runs)} |")
    for name in commands:
        first, second = medians.get(f"{name}, first call"), medians.get(f"{name}, second call")
        if first and second:
            print(f"{name}: second call / first call = {second / first:.2f}")
    print("\nwhere memlaw ask's time goes (median s per phase):")
    for state in ("first call", "second call"):
        rows = [row["phases"] for (name, _), row in done.items() if name == f"ask phases, {state}"]
        if rows:
            parts = ", ".join(f"{phase} {statistics.median(r[phase] for r in rows):.1f}" for phase in rows[0])
            print(f"  {state}: {parts}")


if __name__ == "__main__":
    main()
