# Entry points for a fresh machine: `make serve` and `make test` (each creates .venv and installs what
# it needs at the versions of the lock, constraints.txt; the stamp files make the second run instant
# until pyproject.toml or the lock changes), and the container targets (README's Containers section).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
LOCK := constraints.txt
PIP_INSTALL = $(PY) -m pip install -q -c $(LOCK)
# `make serve PORT=8001` and `NAMEGEN_PORT=8001 make serve` agree: the environment's NAMEGEN_* is the default.
HOST ?= $(or $(NAMEGEN_HOST),127.0.0.1)
PORT ?= $(or $(NAMEGEN_PORT),8000)
TAG ?= $(shell docker/image-tag)
# Where the cluster pulls the images from (`make k8s-tag REGISTRY=...`); default: what deploy/k8s names now.
REGISTRY ?= $(shell sed -n -E 's/^ *image: (.*)\/namegen-api:.*/\1/p' deploy/k8s/deployment.yaml | head -n 1)

.PHONY: serve dev token token-revoke test chromium reliability default-model models lock images docker-start docker-stop deploy-test k8s-tag clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Serving needs no torch.
$(VENV)/.serve-installed: pyproject.toml $(LOCK) | $(PY)
	$(PIP_INSTALL) -e '.[serve]'
	touch $@

# torch==2.13.0 first: a CPU build on these machines; the project's torch range then adds nothing.
$(VENV)/.dev-installed: pyproject.toml $(LOCK) | $(PY)
	$(PIP_INSTALL) torch==2.13.0
	$(PIP_INSTALL) -e '.[serve,train,dev]'
	touch $@ $(VENV)/.serve-installed

serve: $(VENV)/.serve-installed
	NAMEGEN_HOST=$(HOST) NAMEGEN_PORT=$(PORT) $(PY) -m service

# The training side too (torch, the dev tools), without running the tests.
dev: $(VENV)/.dev-installed

# An API token for the containers (compose's secret directory ./secrets, the swarm stack's file): printed
# once, only its hash is kept; RATE= and BURST= give it its own limit in names per second. The file is
# 0600, so as root it is given to the api's uid (10001) after every change, or the containers could not
# read it; `make token-revoke NAME=...` removes one.
NAME ?= me
SCOPES ?= generate,score,infer,read
TOKENS_FILE ?= secrets/tokens.json
define give_tokens_to_api
	@if [ "$$(id -u)" = 0 ]; then chown 10001:10001 $(TOKENS_FILE); \
	 else echo "(not root: make $(TOKENS_FILE) readable by uid 10001, the api's user)" >&2; fi
endef
token:
	@$(MAKE) --no-print-directory -s $(VENV)/.serve-installed >&2  # stdout carries the token alone
	@$(PY) -m service.tokens add $(NAME) --scopes $(SCOPES) --file $(TOKENS_FILE) $(if $(RATE),--rate $(RATE)) $(if $(BURST),--burst $(BURST))
	$(give_tokens_to_api)

token-revoke:
	@$(MAKE) --no-print-directory -s $(VENV)/.serve-installed >&2
	@$(PY) -m service.tokens revoke $(NAME) --file $(TOKENS_FILE)
	$(give_tokens_to_api)

test: $(VENV)/.dev-installed chromium
	$(PY) -m pytest -q

# The browser tests (tests/browser) drive Debian's chromium; a browser download is not possible here.
chromium:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] || { echo "make test needs Debian's chromium: run as root or apt-get install -y chromium" >&2; exit 1; }; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

# Hostile and heavy input, faults and slow clients against real servers (a few minutes; docs/reliability.md).
# RELIABILITY_DOC=1 writes each case's figures and outcome into docs/benchmarks.md at the end.
reliability: $(VENV)/.dev-installed
	$(PY) -m pytest -q -m reliability tests/reliability

# Retrain the shipped default model on the default corpus and publish it to models/.
default-model: $(VENV)/.dev-installed
	$(PY) -m training train --config configs/default.toml --out runs/default --publish models --name names

# Train and publish the family of models (configs/family.toml) into models/, each by the recipe it names.
# A model whose current version has its corpus and configuration is up to date (seconds, nothing
# trained); a finished run is published as it is; an interrupted one continues (run it again).
# ONLY="girls boys" limits it to those; FORCE_TRAIN=1 trains even what is up to date.
models: $(VENV)/.dev-installed
	$(PY) -m training family --config configs/family.toml --registry models --runs runs/family \
	  $(foreach m,$(ONLY),--only $(m)) $(if $(FORCE_TRAIN),--force-train)

# Update the lock: resolve pyproject.toml's ranges afresh (newest allowed versions) in a scratch venv
# and record every installed version. Review the diff, run `make test`, commit.
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install -q torch==2.13.0
	.venv-lock/bin/pip install -q '.[serve,train,dev]'
	sed -n '/^#/p' $(LOCK) > $(LOCK).new
	.venv-lock/bin/pip freeze --exclude namegen | sed 's/^torch==2.13.0+cpu$$/torch==2.13.0/' >> $(LOCK).new
	mv $(LOCK).new $(LOCK) && rm -rf .venv-lock build *.egg-info
	git diff --stat -- $(LOCK)

# Containers (root; Debian's docker.io and docker-compose, see README). The daemon uses the data root
# the deployment test uses too (/var/lib/namegen-docker), so either one's layer cache serves the other.
docker-start:
	docker/dockerd-ctl start

docker-stop:
	docker/dockerd-ctl stop

# Base stand-in when missing, then namegen-{api,trainer,lb}:$(TAG); .env tells docker-compose the tag.
images:
	docker/build-images $(TAG)
	echo "NAMEGEN_TAG=$(TAG)" > .env

# Point deploy/k8s/ at the images of this commit in REGISTRY (push them there: docs/deploy.md), then
# commit the manifests (that commit keeps the tag: it changes nothing the images are built from).
k8s-tag:
	@case "$(TAG)" in *-dirty-*) echo "k8s-tag: the working tree differs from its commit ($(TAG)): commit first, so the tag names a build anyone can reproduce" >&2; exit 2;; esac
	@[ -n "$(REGISTRY)" ] || { echo "k8s-tag: set REGISTRY (e.g. make k8s-tag REGISTRY=registry.example.com/namegen)" >&2; exit 2; }
	sed -i -E 's#image: [^ ]*namegen-(api|trainer):[^ ]+#image: $(REGISTRY)/namegen-\1:$(TAG)#' deploy/k8s/*.yaml
	grep -n 'image: ' deploy/k8s/*.yaml

# Builds the images and runs the compose stack for real (root; the base-image tool, docs/deploy.md). See docs/deploy.md.
deploy-test:
	.ci/deploy-test

clean:
	rm -rf $(VENV) runs .pytest_cache
