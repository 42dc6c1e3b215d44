# Master Control — the commands a user needs. `make run` and `make test` set themselves up.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | cksum | cut -d' ' -f1)
VAR    := var
DAEMON_ARGS := --config-dir examples/configs --db-path $(VAR)/state.db \
               --socket-path $(VAR)/mastercontrol.sock --log-dir $(VAR)/log
CTL    := $(BIN)/mastercontrol-ctl $(DAEMON_ARGS)
# The tokens of the example fleet (examples/configs/daemon.yaml and inventory.yaml name them):
# the operator's token of the dashboard, this device's, and the local fleet's two devices'.
TOKENS := $(VAR)/central.token $(VAR)/this-device.token $(VAR)/pi-01.token $(VAR)/pi-02.token

.PHONY: install run start stop restart status logs test lint validate clean bench \
        system-packages setup setup-local deploy deploy-client deploy-dry-run deploy-sync

$(STAMP): setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

# Made once, readable by the owner only; kept across runs (`make clean` removes them).
$(VAR)/%.token: | $(STAMP)
	@mkdir -p $(VAR)
	@umask 077 && $(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(32))' > $@

# The examples with fleet and central enabled on 127.0.0.1: the dashboard on :8080 shows this
# device (and the local fleet of README.md, once its two daemons run).
run: $(STAMP) $(TOKENS)
	@mkdir -p $(VAR)/log
	@echo "Dashboard: http://127.0.0.1:8080/ — token: $$(cat $(VAR)/central.token)"
	$(BIN)/mastercontrold $(DAEMON_ARGS)

start: $(STAMP) $(TOKENS)
	@mkdir -p $(VAR)/log
	$(CTL) up --detach
	@echo "Dashboard: http://127.0.0.1:8080/ — token: $$(cat $(VAR)/central.token)"

stop: $(STAMP)
	$(CTL) down

restart: stop start

status: $(STAMP)
	$(CTL) list

logs: $(STAMP)
	@tail -n 50 $(VAR)/log/mastercontrold.log

validate: $(STAMP) $(TOKENS)
	$(CTL) validate

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check mastercontrol tests examples bench
	$(BIN)/mypy

# The system packages the suite needs are listed once, in .ci/packages: installed when run as
# root, named (with the apt-get line to install them) otherwise.
system-packages:
	@sh .ci/system-packages

test: system-packages lint
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/run.py

# Fleet deploys: thin wrappers over the Fabric tasks of fabfile.py (docs/operations.md).
# INVENTORY=path picks the inventory (else MCTL_INVENTORY, ./inventory.yaml, the config dir's);
# FAB_ARGS passes more options, e.g. `make deploy FAB_ARGS=--batch=5`.
FAB      := $(BIN)/fab -r $(CURDIR)
FAB_INV   = $(if $(INVENTORY),--inventory=$(INVENTORY))

setup: $(STAMP)
	$(FAB) setup $(FAB_INV) $(FAB_ARGS)

setup-local: $(STAMP)
	$(FAB) setup-local $(FAB_INV) $(FAB_ARGS)

deploy: $(STAMP)
	$(FAB) deploy $(FAB_INV) $(FAB_ARGS)

deploy-client: $(STAMP)
	@test -n "$(CLIENT)" || { echo "make deploy-client: give the client, e.g. make deploy-client CLIENT=pi-kitchen" >&2; exit 2; }
	$(FAB) deploy --client=$(CLIENT) $(FAB_INV) $(FAB_ARGS)

deploy-dry-run: $(STAMP)
	$(FAB) deploy --dry-run $(FAB_INV) $(FAB_ARGS)

deploy-sync: $(STAMP)
	$(FAB) sync $(FAB_INV) $(FAB_ARGS)

clean:
	rm -rf $(VENV) $(VAR) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
