# Two entry points for a fresh machine: `make serve` and `make test`. Each creates .venv and installs
# what it needs; the stamp files make the second run instant until pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: serve test reliability default-model deploy-test clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Serving needs no torch.
$(VENV)/.serve-installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[serve]'
	touch $@

# torch==2.13.0 first: a CPU build on these machines; the project's torch range then adds nothing.
$(VENV)/.dev-installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[serve,train,dev]'
	touch $@ $(VENV)/.serve-installed

serve: $(VENV)/.serve-installed
	NAMEGEN_HOST=$(HOST) NAMEGEN_PORT=$(PORT) $(PY) -m service

test: $(VENV)/.dev-installed
	$(PY) -m pytest -q

# Hostile and heavy input, faults and slow clients against real servers (a few minutes; docs/reliability.md).
reliability: $(VENV)/.dev-installed
	$(PY) -m pytest -q -m reliability tests/reliability

# Retrain the shipped default model on the default corpus and publish it to models/.
default-model: $(VENV)/.dev-installed
	$(PY) -m training train --config configs/default.toml --out runs/default --publish models --name names

# Builds the images and runs the compose stack for real (root; ../shared beside the clone). See docs/deploy.md.
deploy-test:
	.ci/deploy-test

clean:
	rm -rf $(VENV) runs .pytest_cache
