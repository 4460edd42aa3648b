# citycard — every target creates .venv itself on first use.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
# Optional extras: PC/SC readers need pyscard, which builds against Debian's libpcsclite-dev and swig.
# `make pcsc` installs those (as root or with sudo) and the extra; CI asks for it with EXTRAS=dev,pcsc.
EXTRAS ?= dev
comma  := ,
STAMP  := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint format bench pcsc clean compiled

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (Python 3.11+)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $(STAMP)

# The hot path's modules compiled by mypyc into .venv (citycard._compiled): rebuilt when their sources
# change, used only when built from the sources present; without a C compiler they run as source.
compiled: $(STAMP)
	@$(BIN)/python -m citycard._mypyc_build

# The whole platform with a demo city, its terminals paying through it, until Ctrl-C
# (`citycard demo` walks one card through the chain step by step and ends by itself).
run: $(STAMP) compiled
	$(BIN)/citycard up --demo

test: lint compiled
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

bench: $(STAMP) compiled
	$(BIN)/python -m benchmarks

# PC/SC readers: Debian's pcscd, the vsmartcard virtual reader and what pyscard builds against.
pcsc:
	@dpkg -s pcscd vsmartcard-vpcd pcsc-tools libpcsclite-dev swig >/dev/null 2>&1 || { \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) apt-get install -y -qq pcscd vsmartcard-vpcd pcsc-tools libpcsclite-dev swig; } || { \
	  echo "could not install them: run 'sudo apt-get install pcscd vsmartcard-vpcd pcsc-tools libpcsclite-dev swig'"; exit 1; }
	$(MAKE) $(VENV)/.installed-dev-pcsc EXTRAS=dev,pcsc

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
