"""The DuckDB results store: evaluation runs with per-query results and metrics, agent trajectories,
and pairwise human votes (battles) between trajectories.

One `ResultsStore` per process holds the single DuckDB connection; every thread gets its own cursor
(`con.cursor()`), and writes are serialised by a lock and run in a transaction each. DuckDB lets only one
process open a file for writing: opening a file that another process holds raises `StoreLockedError`.

The schema is versioned: `MIGRATIONS[i]` upgrades the schema to version i + 1; on open, the ones not yet
recorded in `schema_version` are applied in order. Add a migration to change the schema; never edit one.

A battle stores its trajectory pair canonically (smaller id first, the vote flipped to match), so one
annotator can vote on an unordered pair at most once; a second vote is refused, never overwritten. A vote may
carry salted hashes of the client address and session it came from (for audits); annotators an operator flags
(`flag`) stay stored but `votes(include_flagged=False)` leaves them out.

Durability: a commit is in the write-ahead log (`FILE.wal`) when it returns; `checkpoint()` moves the log into
the database file (the app does it every few seconds, `close()` does it always), so the `.duckdb` file alone
holds every vote after a clean close. `backup(out_dir)` writes a consistent copy while the store is in use.
"""

from __future__ import annotations

import functools
import json
import subprocess
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from core.settings import REPO_ROOT
from eval.stats import FLIPPED_VOTE, VOTES

MIGRATIONS: list[str] = [
    """
    CREATE SEQUENCE run_ids START 1;
    CREATE TABLE runs (
        id BIGINT PRIMARY KEY DEFAULT nextval('run_ids'),
        created_at TIMESTAMP NOT NULL,
        system VARCHAR NOT NULL,
        config JSON,
        code_version VARCHAR NOT NULL,
        dataset VARCHAR NOT NULL,
        dataset_hash VARCHAR,
        setting VARCHAR,
        split VARCHAR
    );
    CREATE TABLE query_results (
        run_id BIGINT NOT NULL REFERENCES runs (id),
        query_id VARCHAR NOT NULL,
        query VARCHAR,
        ranked JSON NOT NULL,
        scores JSON,
        gold JSON,
        latency_ms DOUBLE,
        PRIMARY KEY (run_id, query_id)
    );
    CREATE TABLE metrics (
        run_id BIGINT NOT NULL REFERENCES runs (id),
        name VARCHAR NOT NULL,
        value DOUBLE NOT NULL,
        ci_low DOUBLE,
        ci_high DOUBLE,
        PRIMARY KEY (run_id, name)
    );
    CREATE SEQUENCE trajectory_ids START 1;
    CREATE TABLE trajectories (
        id BIGINT PRIMARY KEY DEFAULT nextval('trajectory_ids'),
        system VARCHAR NOT NULL,
        dataset VARCHAR NOT NULL,
        query_id VARCHAR NOT NULL,
        query VARCHAR,
        steps JSON NOT NULL,
        final_answer VARCHAR,
        metrics JSON,
        created_at TIMESTAMP NOT NULL
    );
    CREATE SEQUENCE battle_ids START 1;
    CREATE TABLE battles (
        id BIGINT PRIMARY KEY DEFAULT nextval('battle_ids'),
        query_id VARCHAR NOT NULL,
        trajectory_a BIGINT NOT NULL REFERENCES trajectories (id),
        trajectory_b BIGINT NOT NULL REFERENCES trajectories (id),
        annotator VARCHAR NOT NULL,
        vote VARCHAR NOT NULL CHECK (vote IN ('A', 'B', 'tie', 'both_bad')),
        comment VARCHAR,
        created_at TIMESTAMP NOT NULL,
        CHECK (trajectory_a < trajectory_b),
        UNIQUE (trajectory_a, trajectory_b, annotator)
    );
    """,
    """
    ALTER TABLE battles ADD COLUMN client_hash VARCHAR;
    ALTER TABLE battles ADD COLUMN session_hash VARCHAR;
    CREATE TABLE flagged_annotators (
        annotator VARCHAR PRIMARY KEY,
        reason VARCHAR,
        flagged_at TIMESTAMP NOT NULL
    );
    """,
]

TABLES = ("runs", "query_results", "metrics", "trajectories", "battles", "flagged_annotators")


class StoreLockedError(RuntimeError):
    """The store file is held by another process."""


@dataclass(frozen=True)
class QueryResult:
    """One query's retrieval outcome: ranked tool ids (best first) with their scores."""

    query_id: str
    query: str
    ranked: list[str]
    scores: list[float] = field(default_factory=list)
    gold: list[str] = field(default_factory=list)
    latency_ms: float | None = None


@dataclass(frozen=True)
class MetricValue:
    """One aggregate metric of a run, with an optional confidence interval."""

    name: str
    value: float
    ci_low: float | None = None
    ci_high: float | None = None


@dataclass(frozen=True)
class StoredTrajectory:
    """One agent run on one query; `id` is assigned by the store."""

    system: str
    dataset: str
    query_id: str
    query: str
    steps: list[dict]
    final_answer: str = ""
    metrics: dict = field(default_factory=dict)
    id: int | None = None


@functools.cache
def describe_code_version(repo: Path = REPO_ROOT) -> str:
    """`git describe --always --dirty` of the repository, or 'unknown' where git cannot tell."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=repo, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _to_json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what}: not JSON-serialisable: {error}") from None


_RESULT_COLUMNS = "query_id, query, ranked, scores, gold, latency_ms"


def _query_result(row: tuple) -> QueryResult:
    """A QueryResult from a row of `_RESULT_COLUMNS`."""
    query_id, query, ranked, scores, gold, latency_ms = row
    return QueryResult(
        query_id, query, json.loads(ranked), json.loads(scores or "[]"), json.loads(gold or "[]"), latency_ms
    )


def _floats(values: Iterable[Any], what: str) -> list[float]:
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what}: expected numbers: {error}") from None


class ResultsStore:
    """Results of evaluation runs, agent trajectories and human votes in one DuckDB file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(str(self.path))
        except duckdb.IOException as error:
            if "lock" in str(error).lower():
                raise StoreLockedError(
                    f"results store {self.path} is locked: another process holds it open "
                    f"(close that process or use another file). DuckDB said: {error}"
                ) from None
            raise
        self._local = threading.local()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._write_lock = threading.Lock()
        self._unsaved_writes = 0  # commits since the last checkpoint
        self.vote_listeners: list[Callable[[dict], None]] = []  # each called with every stored vote, after its commit
        self._migrate()

    # -- connection plumbing -------------------------------------------------------------------------

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            with self._write_lock:
                if self._con is None:
                    raise RuntimeError(f"results store {self.path} is closed")
                cursor = self._local.cursor = self._con.cursor()
                self._cursors.append(cursor)
        return cursor

    def _write(self, work) -> Any:
        """Run `work(cursor)` in one transaction under the write lock; roll back if it raises."""
        cursor = self._cursor()
        with self._write_lock:
            cursor.begin()
            try:
                result = work(cursor)
            except BaseException:
                cursor.rollback()
                raise
            cursor.commit()
            self._unsaved_writes += 1
            return result

    def _migrate(self) -> None:
        self._con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        for version, sql in enumerate(MIGRATIONS, start=1):
            if version <= self.schema_version:
                continue

            def apply(cursor, sql=sql, version=version):
                cursor.execute(sql)
                cursor.execute("INSERT INTO schema_version VALUES (?)", [version])

            self._write(apply)

    @property
    def schema_version(self) -> int:
        return self._cursor().execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]

    @property
    def unsaved_writes(self) -> int:
        """Commits since the last checkpoint (they are in the write-ahead log, not yet in the database file)."""
        return self._unsaved_writes

    def checkpoint(self) -> None:
        """Move the write-ahead log into the database file (DuckDB's CHECKPOINT), between writes."""
        cursor = self._cursor()
        with self._write_lock:
            cursor.execute("CHECKPOINT")
            self._unsaved_writes = 0

    def close(self) -> None:
        """Checkpoint, then close every thread's cursor and the connection; the store cannot be used afterwards.

        The references go too (a fresh `threading.local` forgets the cursors of threads that outlive the
        store): DuckDB objects still alive at interpreter exit make its bindings print "nanobind: leaked …".
        """
        try:
            if self._con is not None:
                self.checkpoint()
        finally:
            with self._write_lock:
                con, cursors = self._con, self._cursors
                self._con, self._cursors, self._local = None, [], threading.local()
            for cursor in cursors:
                cursor.close()
            if con is not None:
                con.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @staticmethod
    def _insert(cursor: duckdb.DuckDBPyConnection, table: str, rows: Sequence[dict]) -> None:
        """Insert `rows` (dicts with the same keys) as one Arrow batch."""
        if not rows:
            return
        columns = list(rows[0])
        batch = pa.table({c: [row[c] for row in rows] for c in columns})
        names = ", ".join(columns)
        cursor.register("insert_batch", batch)  # a failed insert leaves it registered; the next one replaces it
        cursor.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM insert_batch")
        cursor.unregister("insert_batch")

    # -- runs ------------------------------------------------------------------------------------------

    def add_run(
        self,
        system: str,
        dataset: str,
        results: Iterable[QueryResult] = (),
        metrics: Iterable[MetricValue] = (),
        *,
        config: Mapping[str, Any] | None = None,
        dataset_hash: str = "",
        setting: str = "",
        split: str = "",
        code_version: str | None = None,
    ) -> int:
        """Store a run with its per-query results and metrics in one transaction; returns the run id."""
        run_config = _to_json(dict(config or {}), f"run {system}/{dataset} config")
        result_rows = [
            {
                "query_id": r.query_id,
                "query": r.query,
                "ranked": _to_json(list(r.ranked), f"query {r.query_id} ranked"),
                "scores": _to_json(_floats(r.scores, f"query {r.query_id} scores"), ""),
                "gold": _to_json(list(r.gold), f"query {r.query_id} gold"),
                "latency_ms": r.latency_ms,
            }
            for r in results
        ]
        seen: set[str] = set()
        for row in result_rows:
            if row["query_id"] in seen:
                raise ValueError(f"run {system}/{dataset}: query id {row['query_id']!r} appears more than once")
            seen.add(row["query_id"])
        metrics = list(metrics)
        run_version = code_version or describe_code_version()

        def work(cursor):
            run_id = cursor.execute(
                "INSERT INTO runs (created_at, system, config, code_version, dataset, dataset_hash, setting, split)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                [_utc_now(), system, run_config, run_version, dataset, dataset_hash, setting, split],
            ).fetchone()[0]
            self._insert(cursor, "query_results", [{"run_id": run_id, **row} for row in result_rows])
            self._insert_metrics(cursor, run_id, metrics)
            return run_id

        return self._write(work)

    def _insert_metrics(self, cursor, run_id: int, metrics: Sequence[MetricValue]) -> None:
        self._insert(
            cursor,
            "metrics",
            [
                {"run_id": run_id, "name": m.name, "value": float(m.value), "ci_low": m.ci_low, "ci_high": m.ci_high}
                for m in metrics
            ],
        )

    def add_metrics(self, run_id: int, metrics: Iterable[MetricValue]) -> None:
        """Add metrics to an existing run (a name already stored for that run is an error)."""
        metrics = list(metrics)
        self._write(lambda cursor: self._insert_metrics(cursor, run_id, metrics))

    def runs(self) -> pd.DataFrame:
        """All runs, newest first."""
        return self._cursor().execute("SELECT * FROM runs ORDER BY id DESC").df()

    @staticmethod
    def _latest_run_ids(holding: str | None) -> str:
        """SQL selecting the id of the latest run per (dataset, setting, split, system), among the runs holding
        rows in the table `holding` ('query_results' or 'metrics') when given."""
        if holding not in (None, "query_results", "metrics"):
            raise ValueError(f"holding must be None, 'query_results' or 'metrics', got {holding!r}")
        where = f" WHERE EXISTS (SELECT 1 FROM {holding} h WHERE h.run_id = r.id)" if holding else ""
        return f"SELECT max(id) FROM runs r{where} GROUP BY dataset, coalesce(setting, ''), coalesce(split, ''), system"

    def latest_runs(self, holding: str | None = None) -> pd.DataFrame:
        """The latest run of every (dataset, setting, split, system), ordered by those; with `holding`
        ('query_results': agent runs store only metrics; or 'metrics'), only among the runs holding such rows.
        A missing setting or split reads as ''."""
        return (
            self._cursor()
            .execute(
                "SELECT * REPLACE (coalesce(setting, '') AS setting, coalesce(split, '') AS split) FROM runs"
                f" WHERE id IN ({self._latest_run_ids(holding)}) ORDER BY dataset, setting, split, system"
            )
            .df()
        )

    def metrics(self, run_ids: Sequence[int] | None = None, latest: bool = False) -> pd.DataFrame:
        """Metrics joined with their run's system, dataset, setting and split (a missing one reads as ''): of
        `run_ids`, of the latest run per (dataset, setting, split, system) with `latest`, else of every run."""
        if run_ids is not None and latest:
            raise ValueError("metrics: pass run_ids or latest=True, not both")
        where = (
            " WHERE m.run_id IN (SELECT unnest(?))"
            if run_ids is not None
            else f" WHERE m.run_id IN ({self._latest_run_ids('metrics')})"
            if latest
            else ""
        )
        sql = (
            "SELECT m.*, r.system, r.dataset, coalesce(r.setting, '') AS setting, coalesce(r.split, '') AS split"
            f" FROM metrics m JOIN runs r ON r.id = m.run_id{where} ORDER BY m.run_id, m.name"
        )
        return self._cursor().execute(sql, [list(run_ids)] if run_ids is not None else []).df()

    def query_results(self, run_id: int) -> list[QueryResult]:
        """The per-query results of one run, in query id order."""
        rows = (
            self._cursor()
            .execute(f"SELECT {_RESULT_COLUMNS} FROM query_results WHERE run_id = ? ORDER BY query_id", [run_id])
            .fetchall()
        )
        return [_query_result(row) for row in rows]

    def query_result(self, run_id: int, query_id: str) -> QueryResult | None:
        """One query's result in one run; None when the run holds none for it."""
        row = (
            self._cursor()
            .execute(
                f"SELECT {_RESULT_COLUMNS} FROM query_results WHERE run_id = ? AND query_id = ?", [run_id, query_id]
            )
            .fetchone()
        )
        return None if row is None else _query_result(row)

    # -- trajectories and votes -------------------------------------------------------------------------

    def add_trajectories(self, trajectories: Iterable[StoredTrajectory]) -> list[int]:
        """Store trajectories; returns their new ids in input order."""
        trajectories = list(trajectories)
        rows = [
            {
                "system": t.system,
                "dataset": t.dataset,
                "query_id": t.query_id,
                "query": t.query,
                "steps": _to_json(list(t.steps), f"trajectory {t.system}/{t.query_id} steps"),
                "final_answer": t.final_answer,
                "metrics": _to_json(dict(t.metrics), f"trajectory {t.system}/{t.query_id} metrics"),
                "created_at": _utc_now(),
            }
            for t in trajectories
        ]

        def work(cursor):
            ids = [
                i for (i,) in cursor.execute("SELECT nextval('trajectory_ids') FROM range(?)", [len(rows)]).fetchall()
            ]
            self._insert(cursor, "trajectories", [{"id": i, **row} for i, row in zip(ids, rows)])
            return ids

        return self._write(work) if rows else []

    def trajectories(self, dataset: str | None = None, query_id: str | None = None) -> list[StoredTrajectory]:
        """Stored trajectories, optionally only those of one dataset and/or query, in id order."""
        rows = (
            self._cursor()
            .execute(
                "SELECT id, system, dataset, query_id, query, steps, final_answer, metrics FROM trajectories"
                " WHERE (? IS NULL OR dataset = ?) AND (? IS NULL OR query_id = ?) ORDER BY id",
                [dataset, dataset, query_id, query_id],
            )
            .fetchall()
        )
        return [
            StoredTrajectory(
                system, ds, qid, query, json.loads(steps), final_answer or "", json.loads(metrics or "{}"), id=tid
            )
            for tid, system, ds, qid, query, steps, final_answer, metrics in rows
        ]

    def add_vote(
        self,
        trajectory_a: int,
        trajectory_b: int,
        annotator: str,
        vote: str,
        comment: str = "",
        *,
        client_hash: str | None = None,
        session_hash: str | None = None,
    ) -> bool:
        """Record `annotator`'s vote on a pair of trajectories of the same query.

        `vote` refers to the order given ("A" = trajectory_a is better); `client_hash` and `session_hash` are
        the app's salted fingerprints of where the vote came from. Returns False, storing nothing, if this
        annotator already voted on this pair (in either order).
        """
        if vote not in VOTES:
            raise ValueError(f"unknown vote {vote!r}, expected one of {VOTES}")
        if not annotator:
            raise ValueError("annotator name is empty")
        if trajectory_a == trajectory_b:
            raise ValueError(f"cannot compare trajectory {trajectory_a} with itself")
        if trajectory_a > trajectory_b:
            trajectory_a, trajectory_b, vote = trajectory_b, trajectory_a, FLIPPED_VOTE[vote]

        def work(cursor):
            found = dict(
                cursor.execute(
                    "SELECT id, query_id FROM trajectories WHERE id IN (?, ?)", [trajectory_a, trajectory_b]
                ).fetchall()
            )
            missing = [t for t in (trajectory_a, trajectory_b) if t not in found]
            if missing:
                raise ValueError(f"unknown trajectory id(s) {missing}")
            if found[trajectory_a] != found[trajectory_b]:
                raise ValueError(
                    f"trajectories {trajectory_a} and {trajectory_b} answer different queries "
                    f"({found[trajectory_a]!r} vs {found[trajectory_b]!r})"
                )
            if cursor.execute(
                "SELECT count(*) FROM battles WHERE trajectory_a = ? AND trajectory_b = ? AND annotator = ?",
                [trajectory_a, trajectory_b, annotator],
            ).fetchone()[0]:
                return None
            row = {
                "query_id": found[trajectory_a],
                "trajectory_a": trajectory_a,
                "trajectory_b": trajectory_b,
                "annotator": annotator,
                "vote": vote,
                "comment": comment,
                "created_at": _utc_now(),
                "client_hash": client_hash,
                "session_hash": session_hash,
            }
            cursor.execute(
                f"INSERT INTO battles ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values())
            )
            return row

        row = self._write(work)
        for listener in self.vote_listeners if row else ():
            listener(row)
        return row is not None

    def votes(self, include_flagged: bool = True) -> pd.DataFrame:
        """All votes (or only those of unflagged annotators) with the systems and dataset of both trajectories
        (pair in canonical order)."""
        return (
            self._cursor()
            .execute(
                "SELECT b.*, ta.system AS system_a, tb.system AS system_b, ta.dataset"
                " FROM battles b JOIN trajectories ta ON ta.id = b.trajectory_a"
                " JOIN trajectories tb ON tb.id = b.trajectory_b"
                + ("" if include_flagged else " WHERE b.annotator NOT IN (SELECT annotator FROM flagged_annotators)")
                + " ORDER BY b.id"
            )
            .df()
        )

    def flag(self, annotators: Iterable[str], reason: str = "") -> int:
        """Flag annotators (their votes stay stored, the leaderboard leaves them out); returns how many were new."""
        names = sorted(set(annotators))

        def work(cursor):
            known = {a for (a,) in cursor.execute("SELECT annotator FROM flagged_annotators").fetchall()}
            new = [a for a in names if a not in known]
            if new:
                cursor.executemany(
                    "INSERT INTO flagged_annotators VALUES (?, ?, ?)", [[a, reason, _utc_now()] for a in new]
                )
            return len(new)

        return self._write(work)

    def unflag(self, annotators: Iterable[str]) -> int:
        """Lift the flag of annotators; returns how many were flagged."""
        names = sorted(set(annotators))

        def work(cursor):
            return len(
                cursor.execute(
                    "DELETE FROM flagged_annotators WHERE annotator IN (SELECT unnest(?)) RETURNING annotator", [names]
                ).fetchall()
            )

        return self._write(work)

    def flagged(self) -> dict[str, str]:
        """Flagged annotator -> the reason given."""
        return dict(
            self._cursor()
            .execute("SELECT annotator, coalesce(reason, '') FROM flagged_annotators ORDER BY annotator")
            .fetchall()
        )

    def audit(self) -> pd.DataFrame:
        """One row per annotator: votes, distinct client and session hashes, first and last vote, flag."""
        return (
            self._cursor()
            .execute(
                "SELECT b.annotator, count(*) AS votes, count(DISTINCT b.client_hash) AS clients,"
                " count(DISTINCT b.session_hash) AS sessions, min(b.created_at) AS first_vote,"
                " max(b.created_at) AS last_vote, f.annotator IS NOT NULL AS flagged,"
                " string_agg(DISTINCT b.client_hash, ' ') AS client_hashes"
                " FROM battles b LEFT JOIN flagged_annotators f ON f.annotator = b.annotator"
                " GROUP BY b.annotator, f.annotator ORDER BY votes DESC, b.annotator"
            )
            .df()
        )

    def vote_count(self, annotator: str) -> int:
        """How many votes `annotator` has cast."""
        return self._cursor().execute("SELECT count(*) FROM battles WHERE annotator = ?", [annotator]).fetchone()[0]

    def unjudged_pairs(self, annotator: str, dataset: str | None = None) -> list[tuple[str, int, int]]:
        """(query_id, trajectory_a, trajectory_b) pairs of different systems on the same query that
        `annotator` has not voted on yet; smaller id first, ordered by query and ids."""
        return (
            self._cursor()
            .execute(
                "SELECT ta.query_id, ta.id, tb.id FROM trajectories ta JOIN trajectories tb"
                " ON ta.dataset = tb.dataset AND ta.query_id = tb.query_id AND ta.id < tb.id AND ta.system <> tb.system"
                " WHERE (? IS NULL OR ta.dataset = ?) AND NOT EXISTS (SELECT 1 FROM battles b"
                " WHERE b.trajectory_a = ta.id AND b.trajectory_b = tb.id AND b.annotator = ?)"
                " ORDER BY ta.query_id, ta.id, tb.id",
                [dataset, dataset, annotator],
            )
            .fetchall()
        )

    # -- export ------------------------------------------------------------------------------------------

    def export(self, table: str, path: str | Path) -> Path:
        """Write a whole table to `path`; the suffix picks the format (.csv or .parquet)."""
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}, expected one of {TABLES}")
        path = Path(path)
        formats = {".csv": "FORMAT csv, HEADER", ".parquet": "FORMAT parquet"}
        if path.suffix not in formats:
            raise ValueError(f"{path}: unsupported export format {path.suffix!r}, use .csv or .parquet")
        path.parent.mkdir(parents=True, exist_ok=True)
        quoted = str(path).replace("'", "''")
        self._cursor().execute(f"COPY (SELECT * FROM {table} ORDER BY ALL) TO '{quoted}' ({formats[path.suffix]})")
        return path

    def backup(self, out_dir: str | Path) -> Path:
        """A consistent copy of the whole store as a new DuckDB file in `out_dir` (named after this file and the
        UTC time), taken in one read transaction while other threads go on writing; returns its path."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        stamp = _utc_now().strftime("%Y%m%dT%H%M%S%fZ")
        target = out_dir / f"{self.path.stem}-{stamp}.duckdb"
        partial = target.with_suffix(".duckdb.partial")
        alias = f"backup_{stamp}"
        quoted = str(partial).replace("'", "''")
        cursor = self._cursor()
        source = cursor.execute("SELECT current_database()").fetchone()[0]
        cursor.execute(f"ATTACH '{quoted}' AS {alias}")
        try:
            try:
                cursor.begin()
                cursor.execute(f"COPY FROM DATABASE {source} TO {alias}")
                cursor.commit()
            except BaseException:
                cursor.rollback()
                raise
            finally:
                cursor.execute(f"DETACH {alias}")
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        partial.rename(target)
        return target

    def merge_from(self, path: str | Path) -> dict[str, int]:
        """Copy the runs (with their query results and metrics) and the trajectories of another store file into
        this one, under new ids; votes stay behind (they point at that file's trajectories). DuckDB allows one
        writer per file, so parallel evaluation jobs write separate files and are merged afterwards.
        Returns how many runs and trajectories were copied."""
        other = ResultsStore(path)  # migrates it to this schema version; StoreLockedError if it is in use
        other.close()
        quoted = str(Path(path)).replace("'", "''")
        columns = "created_at, system, config, code_version, dataset, dataset_hash, setting, split"
        trajectory_columns = "system, dataset, query_id, query, steps, final_answer, metrics, created_at"

        def work(cursor):
            runs = [row[0] for row in cursor.execute("SELECT id FROM other.runs ORDER BY id").fetchall()]
            for old in runs:
                new = cursor.execute(
                    f"INSERT INTO runs ({columns}) SELECT {columns} FROM other.runs WHERE id = ? RETURNING id", [old]
                ).fetchone()[0]
                cursor.execute(
                    "INSERT INTO query_results SELECT ?, query_id, query, ranked, scores, gold, latency_ms "
                    "FROM other.query_results WHERE run_id = ?",
                    [new, old],
                )
                cursor.execute(
                    "INSERT INTO metrics SELECT ?, name, value, ci_low, ci_high FROM other.metrics WHERE run_id = ?",
                    [new, old],
                )
            cursor.execute(
                f"INSERT INTO trajectories ({trajectory_columns}) SELECT {trajectory_columns} "
                "FROM other.trajectories ORDER BY id"
            )
            trajectories = cursor.execute("SELECT count(*) FROM other.trajectories").fetchone()[0]
            return {"runs": len(runs), "trajectories": trajectories}

        cursor = self._cursor()
        cursor.execute(f"ATTACH '{quoted}' AS other (READ_ONLY)")
        try:
            return self._write(work)
        finally:
            cursor.execute("DETACH other")
