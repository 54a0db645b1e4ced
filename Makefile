# Two set-up commands for users: `make demo` and `make test`. Everything else is for developers.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml 2>/dev/null | sha256sum | cut -c1-16)
# Prints how long a phase took: $(call timed,name,command)
timed = start=$$(date +%s); echo "==> $(1)"; $(2); rc=$$?; echo "==> $(1): $$(( $$(date +%s) - start ))s (exit $$rc)"; exit $$rc

# Debian packages the tests and the demo use, as <command>:<package> (installed when the command is
# missing): groovy (compile-checks every generated Jenkinsfile), chromium (the Temporal UI browser test,
# driven by Playwright without a browser download), buildah (the build steps' daemonless image builder),
# docker-registry (the stack's image registry), git and openssl (repositories and the stack's PKI), and
# busybox-static (the base image devstack.baseimage seeds into the registry).
SYSTEM_PACKAGES := groovy:groovy chromium:chromium buildah:buildah docker-registry:docker-registry \
  git:git openssl:openssl busybox:busybox-static

IMAGE ?= cubepaas/devops-worker:$(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n 1)

.PHONY: manifests image image-check system-deps install lint test test-unit test-integration test-e2e chaos generate-crd check-crd demo demo-stop stack-up stack-down stack-status testbin bench worker clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(call timed,install,\
	  { [ -x $(PY) ] || $(PYTHON) -m venv $(VENV); } && \
	  $(PY) -m pip install -q --upgrade pip && \
	  $(PY) -m pip install -q -e '.[dev]' && \
	  rm -f $(VENV)/.installed-* && touch $(STAMP))

system-deps:
	@missing=""; for pair in $(SYSTEM_PACKAGES); do \
	  command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  $(call timed,apt-get install$$missing,\
	    { [ "$$(id -u)" = 0 ] && SUDO= || SUDO=sudo; } && \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null); \
	fi

lint: install
	@$(call timed,ruff,$(VENV)/bin/ruff check .)
	@$(call timed,mypy,$(VENV)/bin/mypy crds activities workflows worker devstack)
	@$(call timed,import-linter,$(VENV)/bin/lint-imports)

testbin: install
	@$(call timed,testbin (the stack's Go binaries from Go modules),$(PY) -m devstack.testbin)

# Everything: lint, unit, contract, integration and end-to-end tests against the local stack, then the
# chaos suite (components and workers killed mid-build, about 3 min) in a session of its own, last, so
# that its outages cannot touch the other tests.
test: system-deps lint testbin
	@$(call timed,pytest (all but chaos),$(PY) -m pytest -p no:cacheprovider -m "not chaos" tests)
	@$(call timed,pytest (chaos),$(PY) -m pytest -p no:cacheprovider -m chaos tests/chaos)

chaos: install testbin
	@$(call timed,pytest (chaos),$(PY) -m pytest -p no:cacheprovider -m chaos -s tests/chaos)

# Needs no server.
test-unit: install system-deps
	@$(PY) -m pytest -m unit tests

test-integration: install
	@$(PY) -m pytest -m "integration or e2e" tests

generate-crd: install
	$(PY) -m crds.generate
	$(PY) -m crds.generate --crds-only --dir deploy/chart/crds

# deploy/manifests/worker.yaml: the chart rendered with its defaults (a test fails when it is stale).
manifests: install
	$(PY) -m devstack.manifests

check-crd: install
	$(PY) -m crds.generate --check
	$(PY) -m crds.generate --check --crds-only --dir deploy/chart/crds

stack-up: install system-deps testbin
	$(PY) -m devstack up

stack-down: install
	$(PY) -m devstack down

stack-status: install
	$(PY) -m devstack status

demo: install system-deps testbin
	@$(PY) -m devstack.demo

demo-stop: install
	@$(PY) -m devstack.demo --stop

bench: install system-deps testbin
	@$(PY) -m devstack.bench

# The worker image (linux/amd64) with docker build or buildah bud; BASE=... overrides python:3.11-slim.
image:
	@$(call timed,image $(IMAGE),deploy/build.sh $(IMAGE))

# The image built and started with no registry at all: a Debian base from debootstrap (this machine's
# apt mirror), the worker image FROM it, `--help` and /healthz inside it. Needs root; not in `make test`.
image-check:
	@command -v debootstrap >/dev/null && { command -v buildah >/dev/null || docker info >/dev/null 2>&1; } || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends buildah debootstrap >/dev/null; }
	@$(call timed,image-check,deploy/image-check.sh)

clean:
	rm -rf .devstack .mypy_cache .ruff_cache .pytest_cache
