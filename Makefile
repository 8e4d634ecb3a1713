# switchgear — two commands: `make run` and `make test`.
# Everything a fresh machine needs is installed from here.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
# CPU wheel by default. GPU users: `make install TORCH_SPEC="torch==2.13.0" TORCH_INDEX=<their CUDA index>`
# or install their CUDA torch into .venv first and run `make install TORCH_SPEC=`.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
STAMP := $(VENV)/.installed
TINY := models/tiny

SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: install run test check bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	if [ -n "$(TORCH_SPEC)" ]; then $(PY) -m pip install -q "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)); fi
	$(PY) -m pip install -q -e '.[ml,speedups,test,kubernetes,keda,otel,bench]'
	touch $@

install: $(STAMP)

$(TINY)/config.json: | $(STAMP)
	$(BIN)/switchgear model make-tiny $(TINY) --seed 0

run: install $(TINY)/config.json
	$(BIN)/switchgear up --worker config/worker.yaml --gateway config/gateway.yaml

# The dashboard's browser test drives Debian's chromium through chromedriver.
/usr/bin/chromedriver:
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -qq update
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -qq install -y chromium chromium-driver >/dev/null

# Shared state tests start real redis-server processes (tests/state/conftest.py).
/usr/bin/redis-server:
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -qq update
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -qq install -y redis-server >/dev/null

test: install /usr/bin/chromedriver /usr/bin/redis-server
	$(PY) -m pytest -q -p no:cacheprovider

check: install
	$(BIN)/ruff format --check switchgear tests bench
	$(BIN)/ruff check switchgear tests bench
	$(BIN)/mypy switchgear

bench: install $(TINY)/config.json
	$(PY) bench/overhead.py
	$(PY) bench/responses.py
	$(PY) bench/worker.py
	$(PY) bench/detector.py
	$(PY) bench/nab.py
	$(PY) bench/state_overhead.py

clean:
	rm -rf $(VENV) models .pytest_cache
