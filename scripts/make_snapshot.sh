#!/usr/bin/env bash
# Rebuilds what the repository ships for the Space: the compact default model (assets/model) and the results
# snapshot (assets/results), from models built on this machine. Every step is a documented command; the store is
# a fresh file, so the snapshot holds exactly these runs. Needs models/toolgen-bfcl (`python -m core build`);
# uses models/retrieve-read-bfcl, models/toolgen-toolbench* and ../shared/data/toolbench when present.
#   bash scripts/make_snapshot.sh [TASKS]     # TASKS: BFCL agent tasks per system (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
TASKS=${1:-20}
DB=results/snapshot.duckdb
rm -f "$DB" "$DB.wal"
mkdir -p results

$PY -m core export-compact --model models/toolgen-bfcl --out assets/model --check 50

$PY -m eval retrieval --corpus bfcl --systems toolgen,bm25,embedding --db "$DB" --json
if [ -d ../shared/data/toolbench ]; then
  toolbench=bm25,embedding
  if [ -d models/toolgen-toolbench ] || [ -d models/toolgen-toolbench-retrieval ]; then toolbench=toolgen,$toolbench; fi
  $PY -m eval retrieval --corpus toolbench --setting multi-domain --systems "$toolbench" --db "$DB" --json
fi

agents=toolgen
if [ -d models/retrieve-read-bfcl ]; then agents=toolgen,retrieve-read; fi
$PY -m eval agent --dataset bfcl-single --limit "$TASKS" --systems "$agents" --db "$DB" --json

rm -rf assets/results
$PY -m eval snapshot export --db "$DB" --out assets/results
du -sh assets/model assets/results
