# One-command entry points. Every target that needs the environment runs `setup` first,
# which is idempotent and silent when nothing is missing.
VENV   := .venv
CRS    := $(VENV)/bin/crs
PYTEST := $(VENV)/bin/python -m pytest

.PHONY: setup demo test unit integration bench clean-net check lint

setup:
	@scripts/setup.sh

demo: setup
	@$(CRS) demo

test: setup lint
	@$(PYTEST) tests
	@# the same app on os-ken, Ryu's maintained fork: authentication, CRS, forwarding
	@CRS_TEST_FRAMEWORK=os-ken $(PYTEST) tests/integration/test_auth.py \
	    tests/integration/test_crs.py tests/integration/test_forwarding.py

# ruff (configuration in pyproject.toml): pyflakes, pycodestyle, import order, noqa markers
lint: setup
	@$(VENV)/bin/ruff check --quiet .

unit: setup
	@$(PYTEST) tests/unit

integration: setup
	@$(PYTEST) tests/integration

bench: setup
	@$(CRS) bench all

check: setup
	@$(CRS) check

# Removes only networks that `crs net up` recorded as its own.
clean-net: setup
	@$(CRS) net down --all
