#!/usr/bin/env bash
# Rebuilds what the repository ships for the Space: the results snapshot (assets/results) and, only when
# assets/model is absent, the compact default model; whatever model is missing is built first. The shipped
# snapshot must hold what tests/test_snapshot.py checks: BFCL and ToolBench retrieval runs of all four systems,
# and trajectories that pair ToolGen with retrieve-read and with the GPT-3.5 references. Hours on a 2-core CPU
# (see README: Training, Evaluation); every step is a documented command, and the store is a fresh file, so the
# snapshot holds exactly these runs. Needs ../shared/data/toolbench.
#   bash scripts/make_snapshot.sh [TASKS]     # TASKS: agent tasks per dataset (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
TASKS=${1:-20}
DB=results/snapshot.duckdb
TOOLBENCH=../shared/data/toolbench
rm -f "$DB" "$DB.wal"
mkdir -p results

[ -f models/toolgen-bfcl/toolgen.json ] || $PY -m core build
[ -f models/toolgen-toolbench/toolgen.json ] || $PY -m core build --corpus toolbench --data-dir "$TOOLBENCH"
for corpus in bfcl toolbench; do
  [ -d "models/embedding-ft-$corpus" ] || $PY -m eval train-baseline --kind embedding-ft --corpus "$corpus"
done
[ -d models/retrieve-read-bfcl ] || $PY -m eval train-baseline --kind retrieve-read --corpus bfcl
# The shipped model (what the Space chats with) is kept when present: replacing it is a decision of its own
# (README, Agent), made by deleting assets/model first.
if [ ! -f assets/model/adapter.json ]; then
  $PY scripts/refusal_probe.py --model models/toolgen-bfcl --split train --record > results/refusal-train.json
  $PY -m core export-compact --model models/toolgen-bfcl --out assets/model --check 50
fi

# The lexical weight of toolgen+bm25, swept once per model (`--record` writes it into toolgen.json).
recorded() { $PY -c "import json, sys; sys.exit('lexical_weight' not in json.load(open('$1/toolgen.json')))"; }
for corpus in bfcl toolbench; do
  model=models/toolgen-$corpus-retrieval
  recorded "$model" || $PY -m eval lexical-sweep --corpus "$corpus" --record "$model" --json \
    > "results/lexical-sweep-$corpus.json"
done
systems=toolgen,toolgen+bm25,bm25,embedding,embedding-ft
$PY -m eval retrieval --corpus bfcl --systems "$systems" --db "$DB" --json
$PY -m eval retrieval --corpus toolbench --setting multi-domain --systems "$systems" --db "$DB" --json
$PY -m eval agent --dataset bfcl-single --limit "$TASKS" --systems toolgen,retrieve-read --model assets/model \
  --db "$DB" --json
$PY -m eval agent --dataset toolbench-reference --limit "$TASKS" --systems toolgen --db "$DB" --json

rm -rf assets/results
$PY -m eval snapshot export --db "$DB" --out assets/results
du -sh assets/model assets/results
