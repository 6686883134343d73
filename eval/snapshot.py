"""Results snapshots: a results store as Parquet files small enough to keep in the repository, loaded into a new
results file when the workbench starts on one (a fresh Space shows the stored comparisons at once).

    DIR/manifest.json          {"format": "toolgen-results-snapshot", "version": 1, "schema_version": …,
                                "created_at": …, "code_version": …, "votes": false,
                                "tables": {name: {"file", "rows", "sha256"}}}
    DIR/<table>.parquet        runs, query_results, metrics, trajectories (zstd); with --include-votes also
                               battles and flagged_annotators

Votes stay out unless asked for: they are real people's judgements (and carry fingerprints of their clients).
Importing keeps every id, so votes logged against a snapshot's trajectories (eval/vote_log.py) replay onto the
same trajectories after a restart; the id sequences continue after the imported ids.

    python -m eval snapshot export --db FILE --out DIR [--include-votes]
    python -m eval snapshot import --snapshot DIR --db FILE
"""

from __future__ import annotations

import argparse
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from core.settings import DEFAULT_DB, SNAPSHOT_DIR

from .store import MIGRATIONS, ResultsStore, describe_code_version

SNAPSHOT_FORMAT, SNAPSHOT_VERSION = "toolgen-results-snapshot", 1
MANIFEST = "manifest.json"
RESULT_TABLES = ("runs", "query_results", "metrics", "trajectories")
VOTE_TABLES = ("battles", "flagged_annotators")
SEQUENCES = {"runs": "run_ids", "trajectories": "trajectory_ids", "battles": "battle_ids"}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _quoted(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _schema_ready(db: Path) -> None:
    """Create or migrate the store's schema (ResultsStore does it on open); StoreLockedError if it is held."""
    ResultsStore(db).close()


def export_snapshot(db: Path | str, out: Path | str, include_votes: bool = False) -> dict:
    """Write the store `db` as a snapshot into the folder `out` (created; must be empty); returns the manifest."""
    db, out = Path(db), Path(out)
    if not db.exists():
        raise FileNotFoundError(f"{db}: no results store here")
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} exists and is not empty; choose a new folder")
    _schema_ready(db)
    out.mkdir(parents=True, exist_ok=True)
    tables = {}
    with duckdb.connect(str(db), read_only=True) as con:
        for table in RESULT_TABLES + (VOTE_TABLES if include_votes else ()):
            path = out / f"{table}.parquet"
            con.execute(
                f"COPY (SELECT * FROM {table} ORDER BY ALL) TO {_quoted(path)} (FORMAT parquet, COMPRESSION zstd)"
            )
            rows = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            tables[table] = {"file": path.name, "rows": rows, "sha256": _sha256(path)}
    manifest = {
        "format": SNAPSHOT_FORMAT,
        "version": SNAPSHOT_VERSION,
        "schema_version": len(MIGRATIONS),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "code_version": describe_code_version(),
        "votes": include_votes,
        "tables": tables,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return manifest


def read_manifest(snapshot: Path | str) -> dict:
    """The snapshot's manifest, checked: known format, a schema this code can hold, every file's sha256."""
    snapshot = Path(snapshot)
    path = snapshot / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"{snapshot}: no results snapshot here ({MANIFEST} missing)")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if (manifest.get("format"), manifest.get("version")) != (SNAPSHOT_FORMAT, SNAPSHOT_VERSION):
        raise ValueError(f"{path}: not a {SNAPSHOT_FORMAT} v{SNAPSHOT_VERSION} file")
    if manifest["schema_version"] > len(MIGRATIONS):
        raise ValueError(
            f"{path}: written by a newer store schema (v{manifest['schema_version']}) than this code "
            f"knows (v{len(MIGRATIONS)})"
        )
    for table, entry in manifest["tables"].items():
        if table not in RESULT_TABLES + VOTE_TABLES:
            raise ValueError(f"{path}: unknown table {table!r}")
        if _sha256(snapshot / entry["file"]) != entry["sha256"]:
            raise ValueError(f"{snapshot / entry['file']}: sha256 differs from the manifest's (file changed)")
    return manifest


def is_empty(db: Path | str) -> bool:
    """True when the store holds no runs, trajectories or votes (a missing file is empty)."""
    db = Path(db)
    if not db.exists():
        return True
    _schema_ready(db)
    with duckdb.connect(str(db), read_only=True) as con:
        return not any(
            con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in ("runs", "trajectories", "battles")
        )


def import_snapshot(snapshot: Path | str, db: Path | str) -> dict[str, int]:
    """Load a snapshot into the store `db` (created if missing), which must be empty; returns rows per table."""
    snapshot, db = Path(snapshot), Path(db)
    manifest = read_manifest(snapshot)
    if not is_empty(db):
        raise ValueError(f"{db} already holds results; import a snapshot into a new file")
    _schema_ready(db)
    counts = {}
    with duckdb.connect(str(db)) as con:
        con.begin()
        try:
            for table in RESULT_TABLES + VOTE_TABLES:  # in this order: rows refer to earlier tables
                if table in manifest["tables"]:
                    source = _quoted(snapshot / manifest["tables"][table]["file"])
                    con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM read_parquet({source})")
                    counts[table] = manifest["tables"][table]["rows"]
            for table, sequence in SEQUENCES.items():  # the next id follows the largest imported one
                con.execute(f"SELECT max(nextval('{sequence}')) FROM range((SELECT coalesce(max(id), 0) FROM {table}))")
            con.commit()
        except BaseException:
            con.rollback()
            raise
    return counts


def seed(db: Path | str, snapshot: Path | str = SNAPSHOT_DIR) -> dict[str, int] | None:
    """Import `snapshot` into `db` when the store is missing or empty and the snapshot exists; returns the rows
    imported per table, or None when nothing was done."""
    if not (Path(snapshot) / MANIFEST).exists() or not is_empty(db):
        return None
    return import_snapshot(snapshot, db)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    export = actions.add_parser("export", help="write a results store as a Parquet snapshot")
    export.add_argument("--db", default=str(DEFAULT_DB), help="the results store (not held by another process)")
    export.add_argument("--out", default=str(SNAPSHOT_DIR), help="new folder for the snapshot (default %(default)s)")
    export.add_argument(
        "--include-votes",
        action="store_true",
        help="also the annotation votes and flagged annotators (real people's judgements)",
    )
    load = actions.add_parser("import", help="load a snapshot into a new (or empty) results store")
    load.add_argument("--snapshot", default=str(SNAPSHOT_DIR), help="the snapshot folder (default %(default)s)")
    load.add_argument("--db", default=str(DEFAULT_DB), help="the results store to fill (must be empty)")


def run(args: argparse.Namespace) -> int:
    if args.action == "export":
        manifest = export_snapshot(args.db, args.out, args.include_votes)
        size = sum(f.stat().st_size for f in Path(args.out).iterdir())
        rows = ", ".join(f"{entry['rows']} {table}" for table, entry in manifest["tables"].items())
        print(f"{args.out}: {rows} ({size / 1e3:.0f} kB)")
    else:
        counts = import_snapshot(args.snapshot, args.db)
        print(f"{args.db}: imported " + ", ".join(f"{n} {table}" for table, n in counts.items()))
    return 0
