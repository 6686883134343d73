"""Results snapshots (eval/snapshot.py), the vote log (eval/vote_log.py), and the app starting on a new results
file from a snapshot (app.py's open_workbench)."""

from __future__ import annotations

import importlib.util
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from gradio_client import Client

from core.settings import SNAPSHOT_DIR
from eval.__main__ import main as eval_main
from eval.snapshot import (
    MANIFEST,
    RESULT_TABLES,
    VOTE_TABLES,
    export_snapshot,
    import_snapshot,
    is_empty,
    read_manifest,
    seed,
)
from eval.store import MetricValue, QueryResult, ResultsStore, StoredTrajectory
from eval.vote_log import VoteLog, read_votes, replay, votes_dir

RETRIEVERS = ("toolgen", "bm25", "embedding", "embedding-ft")
AGENTS = ("toolgen", "retrieve-read", "gpt-3.5-reference")
QUERIES = ("q1", "q2", "q3")


def synthetic_results(path: Path) -> Path:
    """A store holding what the lead's real runs hold, made up: retrieval runs of the four systems on BFCL and
    ToolBench (per-query rankings, metrics with CIs), an agent run (metrics only) and three systems'
    trajectories on three queries."""
    with ResultsStore(path) as store:
        for dataset, setting in (("bfcl", ""), ("toolbench", "multi-domain")):
            for rank, system in enumerate(RETRIEVERS):
                results = [
                    QueryResult(
                        f"{dataset}-{j}",
                        f"query {j} <b>",
                        [f"t{(j + rank) % 7}", f"t{(j + 1) % 7}"],
                        [-0.1, -0.7],
                        [f"t{j % 7}"],
                        10.0 + j,
                    )
                    for j in range(6)
                ]
                store.add_run(
                    system,
                    dataset,
                    results,
                    [MetricValue("ndcg@1", 0.3 + rank / 10, 0.2, 0.5), MetricValue("mrr", 0.5, 0.4, 0.6)],
                    config={"k": 5},
                    setting=setting,
                    split="test",
                    code_version="test",
                )
        store.add_run(
            "toolgen",
            "bfcl-single",
            metrics=[MetricValue("ast_accuracy", 0.35, 0.2, 0.5)],
            split="test",
            code_version="test",
        )
        store.add_trajectories(
            StoredTrajectory(
                system,
                "toolbench",
                query_id,
                f"task {query_id}",
                [{"kind": "thought", "text": f"{system} thinks"}],
                final_answer=f"{system} answers",
                metrics={"finished": True},
            )
            for query_id in QUERIES
            for system in AGENTS
        )
    return path


def table(db: Path, name: str) -> pd.DataFrame:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(f"SELECT * FROM {name} ORDER BY ALL").df()


@pytest.fixture
def results(tmp_path) -> Path:
    return synthetic_results(tmp_path / "results.duckdb")


@pytest.fixture
def snapshot_dir(tmp_path, results) -> Path:
    export_snapshot(results, tmp_path / "snapshot")
    return tmp_path / "snapshot"


def pairs_of(store: ResultsStore) -> list[tuple[int, int]]:
    return [(a, b) for _, a, b in store.unjudged_pairs("nobody")]


def test_export_then_import_gives_the_same_tables_and_ids(tmp_path, results, snapshot_dir):
    with ResultsStore(results) as store:
        store.add_vote(*pairs_of(store)[0], "alice", "A")  # a real person's vote: not exported by default
    manifest = read_manifest(snapshot_dir)
    assert set(manifest["tables"]) == set(RESULT_TABLES) and manifest["votes"] is False
    rows = {t: e["rows"] for t, e in manifest["tables"].items()}
    assert rows == {"runs": 9, "query_results": 48, "metrics": 17, "trajectories": 9}
    assert sorted(p.name for p in snapshot_dir.iterdir()) == sorted([MANIFEST, *(f"{t}.parquet" for t in rows)])

    assert import_snapshot(snapshot_dir, tmp_path / "new.duckdb") == rows
    for name in RESULT_TABLES:
        pd.testing.assert_frame_equal(table(tmp_path / "new.duckdb", name), table(results, name))
    assert table(tmp_path / "new.duckdb", "battles").empty
    with ResultsStore(tmp_path / "new.duckdb") as store:  # new rows continue after the imported ids
        assert store.add_run("bm25", "bfcl", code_version="test") == 10
        assert store.add_trajectories([StoredTrajectory("toolgen", "bfcl", "q9", "", [])]) == [10]
        assert len(store.latest_runs("query_results")) == 8 and len(store.metrics(latest=True)) == 17


def test_votes_are_exported_only_when_asked(tmp_path, results):
    with ResultsStore(results) as store:
        for a, b in pairs_of(store)[:4]:
            store.add_vote(a, b, "alice", "B", "because", client_hash="c1", session_hash="s1")
        store.flag(["mallory"], "spam")
    export_snapshot(results, tmp_path / "with-votes", include_votes=True)
    assert set(read_manifest(tmp_path / "with-votes")["tables"]) == set(RESULT_TABLES + VOTE_TABLES)
    import_snapshot(tmp_path / "with-votes", tmp_path / "new.duckdb")
    for name in VOTE_TABLES:
        pd.testing.assert_frame_equal(table(tmp_path / "new.duckdb", name), table(results, name))
    with ResultsStore(tmp_path / "new.duckdb") as store:
        assert store.add_vote(*pairs_of(store)[0], "bob", "A")  # the battle id sequence continues too
        assert store.votes().id.tolist() == [1, 2, 3, 4, 5]


def test_a_store_with_results_is_never_overwritten_and_a_changed_file_is_refused(tmp_path, results, snapshot_dir):
    with pytest.raises(ValueError, match="already holds results"):
        import_snapshot(snapshot_dir, results)
    assert seed(results, snapshot_dir) is None  # start-up on an existing store: nothing happens
    assert seed(tmp_path / "other.duckdb", tmp_path / "no-snapshot") is None and is_empty(tmp_path / "other.duckdb")
    with open(snapshot_dir / "metrics.parquet", "ab") as handle:
        handle.write(b"x")
    with pytest.raises(ValueError, match="sha256 differs"):
        import_snapshot(snapshot_dir, tmp_path / "fresh.duckdb")
    manifest = json.loads((snapshot_dir / MANIFEST).read_text())
    (snapshot_dir / MANIFEST).write_text(json.dumps({**manifest, "schema_version": 99}))
    with pytest.raises(ValueError, match="newer store schema"):
        read_manifest(snapshot_dir)


def test_snapshot_command_line(tmp_path, results, capsys):
    assert eval_main(["snapshot", "export", "--db", str(results), "--out", str(tmp_path / "snap")]) == 0
    assert "9 runs, 48 query_results, 17 metrics, 9 trajectories" in capsys.readouterr().out
    load = ["snapshot", "import", "--snapshot", str(tmp_path / "snap"), "--db"]
    assert eval_main([*load, str(tmp_path / "n.duckdb")]) == 0
    assert "imported 9 runs" in capsys.readouterr().out
    assert eval_main([*load, str(results)]) == 2
    assert "already holds results" in capsys.readouterr().err
    assert eval_main(["snapshot", "export", "--db", str(results), "--out", str(tmp_path / "snap")]) == 2


def test_every_acknowledged_vote_is_logged_once_and_replays_after_a_restart(tmp_path, snapshot_dir):
    seed(tmp_path / "space.duckdb", snapshot_dir)
    store = ResultsStore(tmp_path / "space.duckdb")
    log = VoteLog(store, votes_dir(store.path))
    pairs = pairs_of(store)
    barrier = threading.Barrier(4)

    def annotate(name: str) -> list[tuple]:
        """Votes on every pair, then on every pair again with another verdict (refused); the acknowledged ones."""
        barrier.wait()
        acknowledged = []
        for verdict in ("A", "tie"):
            for a, b in pairs:
                if store.add_vote(a, b, name, verdict, f"by {name}", client_hash=f"c-{name}"):
                    acknowledged.append((name, a, b, verdict))
        return acknowledged

    with ThreadPoolExecutor(4) as pool:
        acknowledged = [vote for votes in pool.map(annotate, ("ann", "ben", "cat", "dan")) for vote in votes]
    assert len(acknowledged) == 4 * len(pairs) == 36
    logged = read_votes(votes_dir(store.path))
    assert sorted((v["annotator"], v["trajectory_a"], v["trajectory_b"], v["vote"]) for v in logged) == sorted(
        acknowledged
    )  # every acknowledged vote once, the refused second votes not at all
    assert {(v["system_a"], v["system_b"]) for v in logged} <= {(a, b) for a in AGENTS for b in AGENTS if a != b}
    stored = store.votes()[["annotator", "trajectory_a", "trajectory_b", "vote", "comment", "client_hash"]]
    log.close()
    store.close()

    restarted = tmp_path / "restarted.duckdb"  # the Space's disk was wiped: same snapshot, votes from the log
    seed(restarted, snapshot_dir)
    with ResultsStore(restarted) as store:
        assert replay(store, votes_dir(tmp_path / "space.duckdb")) == 36
        assert replay(store, votes_dir(tmp_path / "space.duckdb")) == 0  # each pair once per annotator
        columns = stored.columns.tolist()
        pd.testing.assert_frame_equal(
            store.votes()[columns].sort_values(columns).reset_index(drop=True),
            stored.sort_values(columns).reset_index(drop=True),
        )


def test_replay_skips_a_vote_whose_trajectories_differ(tmp_path, snapshot_dir):
    log_dir = tmp_path / "votes"
    log_dir.mkdir()
    import_snapshot(snapshot_dir, tmp_path / "b.duckdb")
    with ResultsStore(tmp_path / "b.duckdb") as store:
        log = VoteLog(store, log_dir)
        a, b = pairs_of(store)[0]
        store.add_vote(a, b, "ann", "A")
        log.close()
    line = json.loads(log.path.read_text())
    log.path.write_text(json.dumps({**line, "system_a": "someone-else"}) + "\n")
    import_snapshot(snapshot_dir, tmp_path / "c.duckdb")
    with ResultsStore(tmp_path / "c.duckdb") as store:
        assert replay(store, log_dir) == 0 and store.votes().empty


def load_entry_point():
    """app.py as a module (the `app` package shadows its name)."""
    spec = importlib.util.spec_from_file_location("workbench_main", Path(__file__).parent.parent / "app.py")
    entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entry)
    return entry


def served(tmp_path, snapshot: Path):
    """(workbench, votes, client) of the app started by app.py's open_workbench on a new results file."""
    from app import build_demo
    from app.ratelimit import RateLimits

    entry = load_entry_point()
    entry.SNAPSHOT_DIR = snapshot
    workbench, votes = entry.open_workbench(str(tmp_path / "no-model"), str(tmp_path / "space" / "workbench.duckdb"))
    demo = build_demo(workbench, limits=RateLimits.off())
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True)
    return demo, workbench, votes, Client(url, verbose=False)


def check_served(tmp_path, snapshot: Path, agents: tuple[str, ...]) -> None:
    """The app on a new results file shows the snapshot's retrieval runs (BFCL and ToolBench, four systems, CIs)
    and offers its trajectories for annotation; a vote goes to the store and the log."""
    from app.compare import run_sets

    demo, workbench, votes, client = served(tmp_path, snapshot)
    try:
        labels = [label for label, _ in run_sets(workbench.store)]
        for corpus in ("bfcl", "toolbench"):
            assert any(label.startswith(corpus) and all(s in label for s in RETRIEVERS) for label in labels), labels
        metrics = workbench.store.metrics(latest=True)
        assert metrics.ci_low.notna().any() and set(RETRIEVERS) <= set(metrics.system)
        systems = {t.id: t.system for t in workbench.store.trajectories()}
        offered = {frozenset((systems[a], systems[b])) for a, b in pairs_of(workbench.store)}
        assert {frozenset(("toolgen", other)) for other in agents[1:]} <= offered
        status, task, left, right = client.predict("visitor", api_name="/next_pair")
        assert "0 of" in status and "pairs judged" in status and left and right
        assert client.predict("Tie", "", api_name="/vote")[0].startswith("Vote saved.")
        assert [v["annotator"] for v in read_votes(votes.directory)] == ["visitor"]
    finally:
        demo.close()
        votes.close()
        workbench.close()


def test_the_app_starts_on_a_new_results_file_from_a_snapshot(tmp_path, snapshot_dir):
    check_served(tmp_path, snapshot_dir, AGENTS)


def test_the_shipped_snapshot_serves_runs_and_pairs(tmp_path):
    assert (SNAPSHOT_DIR / MANIFEST).exists(), f"no results snapshot in {SNAPSHOT_DIR} (bash scripts/make_snapshot.sh)"
    check_served(tmp_path, SNAPSHOT_DIR, AGENTS)


def test_the_app_serves_the_built_model_else_the_shipped_compact_one(tmp_path, monkeypatch):
    import core.settings as settings

    monkeypatch.delenv("TOOLGEN_MODEL", raising=False)
    monkeypatch.setattr(settings, "DEFAULT_MODEL_DIR", tmp_path / "models" / "toolgen-bfcl")
    assert settings.served_model_dir() == settings.SHIPPED_MODEL_DIR  # a clone without models/
    settings.DEFAULT_MODEL_DIR.mkdir(parents=True)
    (settings.DEFAULT_MODEL_DIR / "toolgen.json").write_text("{}")
    assert settings.served_model_dir() == settings.DEFAULT_MODEL_DIR  # after `make build`
    monkeypatch.setenv("TOOLGEN_MODEL", str(tmp_path / "elsewhere"))  # read into DEFAULT_MODEL_DIR at import
    (settings.DEFAULT_MODEL_DIR / "toolgen.json").unlink()
    assert settings.served_model_dir() == settings.DEFAULT_MODEL_DIR
