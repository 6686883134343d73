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

test: setup
	$(PY) -m pytest tests -q -p no:cacheprovider
