# Two entry points for a fresh machine: `make demo` (the demo audit) and `make test`.
# Both create .venv and install miakit with its dependencies pinned by constraints.txt: the demo
# only what it needs, the tests the dev, ray and text extras too.
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
INSTALLED_DEV := $(VENV)/.installed-dev

.PHONY: demo test lint bench docs

$(INSTALLED): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e .
	touch $(INSTALLED)

$(INSTALLED_DEV): $(INSTALLED)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,ray,text]'
	touch $(INSTALLED_DEV)

demo: $(INSTALLED)
	$(BIN)/miakit audit --config configs/digits.yaml --out runs/digits

lint: $(INSTALLED_DEV)
	$(BIN)/ruff check src tests bench studies docs
	$(BIN)/ruff format --check src tests bench studies docs

test: lint
	$(BIN)/pytest

bench: $(INSTALLED_DEV)
	$(BIN)/python bench/stages.py --config configs/digits.yaml

# The API reference, from the docstrings of the public module (`miakit.__all__`): docs/api/.
docs: $(INSTALLED_DEV)
	$(BIN)/python docs/build.py docs/api
