# The two commands of the README: `make run` (build the default model if missing, start the workbench)
# and `make test` (the test suite). Both install what they need first.
PY := .venv/bin/python
MODEL ?= models/toolgen-bfcl

.PHONY: setup run build test
setup:
	@bash scripts/setup.sh

build: setup
	@[ -f $(MODEL)/toolgen.json ] || $(PY) -m core build --out $(MODEL)

run: build
	$(PY) app.py --model $(MODEL)

# --durations: the slowest tests, so that a test growing slow shows in every CI log (the slow ones are marked
# @pytest.mark.slow and still run here; `-m "not slow"` leaves them out while iterating).
test: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	$(PY) -m pytest tests -q --durations=15
