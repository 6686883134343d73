#!/usr/bin/env bash
# Create .venv, install the pinned requirements and this repository as an editable package (core, eval, app);
# a no-op when the stamp of the requirement files and pyproject.toml says they are already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
stamp=".venv/.installed-$(cat requirements.txt requirements-nodeps.txt pyproject.toml | sha1sum | cut -c1-12)"
if [ -f "$stamp" ]; then exit 0; fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
# torch==2.13.0 is pinned in requirements.txt: an unpinned torch pulls a multi-GB CUDA build.
.venv/bin/pip install --quiet -r requirements.txt
# These wheels declare dependencies we must not pull (llama.cpp bindings, numpy 1.26, API clients).
.venv/bin/pip install --quiet --no-deps -r requirements-nodeps.txt
# The packages import each other as `core`, `eval`, `app` from anywhere (tests, scripts, subprocesses): no sys.path
# edits. pyproject.toml declares no dependencies (they are the pinned files above). PYTHONWARNINGS hides setuptools'
# generic note on editable installs.
PYTHONWARNINGS=ignore .venv/bin/pip install --quiet --no-deps -e .
rm -f .venv/.installed-*
touch "$stamp"
echo "setup: .venv ready"
