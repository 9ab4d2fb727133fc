# The two commands a new user runs: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install browser prometheus demo test bench lint clean

CHROMIUM ?= /usr/bin/chromium

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

# sep2cert (the 2030.5 certificate validator of the SEP2-Tools family) and sep2tools need Python
# >= 3.12: they get their own venv, and the tests run them as a separate process, an independent
# 2030.5 implementation judging the certificates the GDSC issues (tests/gdsc/test_sep2_profile.py).
SEP2_VENV := .venv-sep2
SEP2_PY ?= $(shell for p in python3.14 python3.13 python3.12 $$(pyenv root 2>/dev/null)/versions/3.1[2-9]*/bin/python3; do \
	"$$p" -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null && { echo "$$p"; break; }; done)
$(SEP2_VENV)/.installed:
	@if [ -n "$(SEP2_PY)" ]; then \
		$(SEP2_PY) -m venv $(SEP2_VENV) && $(SEP2_VENV)/bin/pip install -q 'sep2cert==0.2.1' 'sep2tools==0.5.1' \
		&& touch $@; \
	else echo "no Python >= 3.12: the sep2cert certificate checks will be skipped"; fi

install: $(STAMP) $(SEP2_VENV)/.installed

demo: $(STAMP)
	$(BIN)/smarthub demo

# The IHD browser tests drive Debian's Chromium (Playwright downloads no browser). Installing
# it needs root; without it the browser tests are reported as skipped (CI requires them).
browser:
	@test -x $(CHROMIUM) || { [ "$$(id -u)" = 0 ] && apt-get update -q && apt-get install -y -q chromium; } \
		|| echo "chromium is not installed (needs root): the IHD browser tests will be skipped"

# promtool checks the alerting rules and the dashboard's queries, and a real Prometheus scrapes a
# running GDSC (tests/deployment/test_monitoring.py): Debian's prometheus package, root to install;
# without it those tests are reported as skipped.
prometheus:
	@command -v promtool >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -q && apt-get install -y -q prometheus; } \
		|| echo "prometheus is not installed (needs root): the promtool and Prometheus tests will be skipped"

# Two pytest processes (pytest-xdist): the tests wait on subprocesses, sockets and PostgreSQL
# much of the time, so one process leaves the second core idle; every test has its own state
# directory, ports and PostgreSQL schema, so they run side by side.
PYTEST_WORKERS ?= 2
test: install browser prometheus
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/pytest -q -n $(PYTEST_WORKERS)

bench: $(STAMP)
	SMARTHUB_FUZZ_EXAMPLES=20000 $(BIN)/pytest -q tests/meters -k "fuzz or Fuzz"
	$(BIN)/pytest -q -m slow
	$(BIN)/python bench/fuzz.py --inputs 1000000 --processes 2
	$(BIN)/python bench/codecs.py
	$(BIN)/python bench/demo_day.py
	$(BIN)/python bench/hub.py
	$(BIN)/python bench/store.py
	$(BIN)/python bench/pull.py --hubs 1000 --processes 2
	$(BIN)/python bench/api_load.py --hubs 2000 --processes 2
	$(BIN)/python bench/plan.py --hubs 20000 --collectors 2
	$(BIN)/smarthub chaos --homes 200 --days 3 --seed 1 --seconds-per-day 400

# mypy reads [tool.mypy] in pyproject.toml: strict for model/, meters/, wan/contract/; default elsewhere.
lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(SEP2_VENV) .pytest_cache .mypy_cache build *.egg-info src/*.egg-info test-artifacts
