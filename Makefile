# Two entry points for a fresh machine: `make demo` (the default audit) and `make test`.
# Both create .venv and install miakit with every dependency pinned by constraints.txt.
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo test lint bench

$(INSTALLED): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,ray]'
	touch $(INSTALLED)

demo: $(INSTALLED)
	$(BIN)/miakit audit --config configs/digits.yaml --out runs/digits

lint: $(INSTALLED)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

test: lint
	$(BIN)/pytest

bench: $(INSTALLED)
	$(BIN)/python bench/stages.py
