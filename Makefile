# The two commands a new user runs: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install browser demo test bench lint clean

CHROMIUM ?= /usr/bin/chromium

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/smarthub demo

# The IHD browser tests drive Debian's Chromium (Playwright downloads no browser). Installing
# it needs root; without it the browser tests are reported as skipped (CI requires them).
browser:
	@test -x $(CHROMIUM) || { [ "$$(id -u)" = 0 ] && apt-get update -q && apt-get install -y -q chromium; } \
		|| echo "chromium is not installed (needs root): the IHD browser tests will be skipped"

test: $(STAMP) browser
	$(BIN)/ruff check src tests bench
	$(BIN)/pytest -q

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

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info src/*.egg-info test-artifacts
