import subprocess
import sys
import threading

import duckdb
import pandas as pd
import pytest

from eval.store import MIGRATIONS, MetricValue, QueryResult, ResultsStore, StoredTrajectory


@pytest.fixture
def store(tmp_path):
    with ResultsStore(tmp_path / "results.duckdb") as s:
        yield s


def _results(n=3):
    return [
        QueryResult(f"q{i}", f"query {i}", [f"t{i}", "t9"], [2.5, 1.0], [f"t{i}"], latency_ms=1.5 * i) for i in range(n)
    ]


def _trajectories(store, query_id="q1", systems=("bm25", "toolgen", "embed")):
    return store.add_trajectories(
        StoredTrajectory(
            system, "bfcl", query_id, "what is up", [{"thought": "x", "action": system}], "done", {"ok": 1}
        )
        for system in systems
    )


def test_run_round_trip(store):
    run_id = store.add_run(
        "bm25",
        "toolbench-G1",
        _results(),
        [MetricValue("ndcg@1", 0.5, 0.4, 0.6)],
        config={"k": 5},
        dataset_hash="abc",
        setting="in-domain",
        split="test",
        code_version="v1",
    )
    runs = store.runs()
    assert runs.loc[0, ["id", "system", "dataset", "dataset_hash", "setting", "split", "code_version"]].tolist() == [
        run_id,
        "bm25",
        "toolbench-G1",
        "abc",
        "in-domain",
        "test",
        "v1",
    ]
    assert store.query_results(run_id) == _results()
    metrics = store.metrics([run_id])
    columns = ["name", "value", "ci_low", "ci_high", "system"]
    assert metrics[columns].values.tolist() == [["ndcg@1", 0.5, 0.4, 0.6, "bm25"]]
    store.add_metrics(run_id, [MetricValue("mrr", 0.7)])
    assert sorted(store.metrics()["name"]) == ["mrr", "ndcg@1"]


def test_failed_run_is_rolled_back(store):
    with pytest.raises(ValueError, match="q0 scores"):
        store.add_run("bm25", "d", [QueryResult("q0", "x", ["t"], ["not a number"])], code_version="v")
    bad = [QueryResult("q0", "x", ["t"]), QueryResult("q0", "x", ["t"])]  # duplicate query id
    with pytest.raises(ValueError, match="query id 'q0' appears more than once"):
        store.add_run("bm25", "d", bad, code_version="v")
    with pytest.raises(duckdb.ConstraintException):  # a metric name twice fails inside the transaction
        store.add_run("bm25", "d", _results(2), [MetricValue("mrr", 1.0)] * 2, code_version="v")
    assert store.runs().empty
    assert store._cursor().execute("SELECT count(*) FROM query_results").fetchone() == (0,)
    run_id = store.add_run("bm25", "d", _results(2), [MetricValue("mrr", 1.0)], code_version="v")
    assert len(store.query_results(run_id)) == 2


def test_latest_run_per_dataset_setting_split_and_system(store):
    def run(system, setting, value=None, results=()):
        metrics = [MetricValue("ndcg@1", value)] if value is not None else []
        return store.add_run(system, "d", results, metrics, setting=setting, split="test", code_version="v")

    old_bm25, old_toolgen = run("bm25", "in", 0.1), run("toolgen", "in", 0.2, _results(1))
    new_bm25, other_setting = run("bm25", "in", 0.3), run("bm25", "multi", 0.4)
    bare = run("toolgen", "in")  # newest, but holds neither metrics nor results
    latest = store.latest_runs()
    assert sorted(latest["id"]) == sorted([new_bm25, bare, other_setting])
    assert sorted(store.latest_runs("metrics")["id"]) == sorted([new_bm25, old_toolgen, other_setting])
    assert store.latest_runs("query_results")["id"].tolist() == [old_toolgen]
    frame = store.metrics(latest=True)
    assert sorted(zip(frame.system, frame.setting, frame.value)) == [
        ("bm25", "in", 0.3),
        ("bm25", "multi", 0.4),
        ("toolgen", "in", 0.2),
    ]
    assert old_bm25 not in set(frame.run_id)
    with pytest.raises(ValueError, match="holding"):
        store.latest_runs("battles")


def test_single_query_lookups(store):
    run_id = store.add_run("bm25", "d", _results(3), code_version="v")
    agent_run = store.add_run("toolgen", "d", metrics=[MetricValue("finished", 0.5)], code_version="v")
    assert store.query_result(run_id, "q1") == _results(3)[1]
    assert store.query_result(run_id, "q7") is None and store.query_result(agent_run, "q1") is None
    assert store.latest_runs("query_results")["id"].tolist() == [run_id]  # the metrics-only run is left out
    a, b, c = _trajectories(store)
    store.add_vote(a, b, "ann", "A")
    store.add_vote(a, c, "ann", "tie")
    store.add_vote(a, b, "other", "B")
    assert (store.vote_count("ann"), store.vote_count("other"), store.vote_count("nobody")) == (2, 1, 0)


def test_close_forgets_every_thread_cursor(tmp_path):
    store = ResultsStore(tmp_path / "r.duckdb")
    store.add_run("bm25", "d", _results(1), code_version="v")
    threads = [threading.Thread(target=store.runs) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store._cursors) == 4  # the main thread's and three workers'
    store.close()
    store.close()  # closing twice is harmless
    assert store._cursors == [] and store._con is None
    with pytest.raises(RuntimeError, match="is closed"):
        store.runs()


def test_no_leak_report_when_threads_outlive_a_closed_store(tmp_path):
    """Cursors kept by threads still alive at exit made DuckDB's bindings print "nanobind: leaked …"."""
    code = (
        "import sys, threading; from eval.store import ResultsStore\n"
        "store, done, ready = ResultsStore(sys.argv[1]), threading.Event(), threading.Barrier(3)\n"
        "def work():\n    store.runs(); ready.wait(); done.wait()\n"
        "for _ in range(2):\n    threading.Thread(target=work, daemon=True).start()\n"
        "ready.wait(); store.close()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "r.duckdb")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "leaked" not in out.stderr, out.stderr[:500]


def test_migrations_idempotent_on_reopen(tmp_path):
    path = tmp_path / "r.duckdb"
    with ResultsStore(path) as s:
        run_id = s.add_run("bm25", "d", _results(1), code_version="v")
        assert s.schema_version == len(MIGRATIONS)
    with ResultsStore(path) as s:
        assert s.schema_version == len(MIGRATIONS)
        assert s._cursor().execute("SELECT count(*) FROM schema_version").fetchone()[0] == len(MIGRATIONS)
        assert s.runs()["id"].tolist() == [run_id]


def test_locked_file_error(tmp_path):
    path = tmp_path / "held.duckdb"
    code = (
        "import sys; from eval.store import ResultsStore, StoreLockedError\n"
        "try:\n    ResultsStore(sys.argv[1])\nexcept StoreLockedError as e:\n    print(e); sys.exit(3)\n"
    )
    with ResultsStore(path):
        out = subprocess.run(
            [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60, cwd=tmp_path
        )  # the installed package, not the working directory
    assert out.returncode == 3, out.stderr
    assert str(path) in out.stdout and "another process" in out.stdout


def test_duplicate_vote_refused(store):
    a, b, c = _trajectories(store)
    assert store.add_vote(a, b, "ann", "A", "a is right") is True
    assert store.add_vote(a, b, "ann", "B") is False
    assert store.add_vote(b, a, "ann", "tie") is False  # same unordered pair
    assert store.add_vote(b, a, "other", "A") is True  # stored canonically: b better -> "B"
    votes = store.votes()
    assert votes[["trajectory_a", "trajectory_b", "annotator", "vote", "system_a", "system_b"]].values.tolist() == [
        [a, b, "ann", "A", "bm25", "toolgen"],
        [a, b, "other", "B", "bm25", "toolgen"],
    ]
    assert votes.loc[0, "comment"] == "a is right"
    assert store.unjudged_pairs("ann") == [("q1", a, c), ("q1", b, c)]
    assert len(store.unjudged_pairs("new")) == 3


def test_bad_votes_name_the_problem(store):
    a, b, _ = _trajectories(store)
    (other,) = _trajectories(store, query_id="q2", systems=("bm25",))
    with pytest.raises(ValueError, match="unknown vote"):
        store.add_vote(a, b, "ann", "C")
    with pytest.raises(ValueError, match="different queries"):
        store.add_vote(a, other, "ann", "A")
    with pytest.raises(ValueError, match="unknown trajectory"):
        store.add_vote(a, 999, "ann", "A")
    assert store.votes().empty


def test_trajectories_round_trip(store):
    ids = _trajectories(store)
    got = store.trajectories(query_id="q1")
    assert [t.id for t in got] == ids
    assert got[0].steps == [{"thought": "x", "action": "bm25"}] and got[0].metrics == {"ok": 1}
    assert store.trajectories(dataset="other") == []


def test_concurrent_writes_stored_once(store):
    ids = _trajectories(store, systems=[f"s{i}" for i in range(21)])
    errors = []

    def worker(i):
        try:
            store.add_run(f"sys{i}", "d", _results(5), [MetricValue("mrr", i / 20)], code_version="v")
            assert store.add_vote(ids[i], ids[i + 1], f"ann{i}", "A")
            store.add_trajectories([StoredTrajectory(f"t{i}", "d2", "q", "x", [])])
        except Exception as error:  # surfaced in the main thread below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    runs = store.runs()
    assert sorted(runs["system"]) == sorted(f"sys{i}" for i in range(20)) and runs["id"].is_unique
    con = store._cursor()
    assert con.execute("SELECT count(*), count(DISTINCT run_id) FROM query_results").fetchone() == (100, 20)
    assert con.execute("SELECT count(*) FROM metrics").fetchone() == (20,)
    assert len(store.votes()) == 20
    assert len(store.trajectories(dataset="d2")) == 20


def test_export_csv_and_parquet(store, tmp_path):
    run_id = store.add_run("bm25", "d", _results(4), code_version="v")
    csv = store.export("query_results", tmp_path / "out" / "qr.csv")
    parquet = store.export("query_results", tmp_path / "qr.parquet")
    from_csv, from_parquet = pd.read_csv(csv), pd.read_parquet(parquet)
    assert len(from_csv) == len(from_parquet) == 4
    assert from_csv["query_id"].tolist() == from_parquet["query_id"].tolist() == ["q0", "q1", "q2", "q3"]
    assert (from_parquet["run_id"] == run_id).all()
    with pytest.raises(ValueError, match="unknown table"):
        store.export("runs; DROP TABLE runs", tmp_path / "x.csv")
    with pytest.raises(ValueError, match="unsupported export format"):
        store.export("runs", tmp_path / "x.json")


def test_merge_from_another_file_renumbers_runs_and_trajectories(store, tmp_path):
    store.add_run("bm25", "bfcl", _results(1), [MetricValue("ndcg@1", 0.1)])
    _trajectories(store, systems=("bm25",))
    with ResultsStore(tmp_path / "other's.duckdb") as other:  # a quote in the name on purpose
        run_id = other.add_run("toolgen", "bfcl", _results(2), [MetricValue("ndcg@1", 0.9, 0.8, 1.0)])
        _trajectories(other, systems=("toolgen", "embed"))
        a, b = [t.id for t in other.trajectories()]
        other.add_vote(a, b, "ann", "A")
    assert store.merge_from(tmp_path / "other's.duckdb") == {"runs": 1, "trajectories": 2}
    runs = store.runs().set_index("system")
    assert len(runs) == 2 and runs.loc["toolgen", "id"] == 2 and run_id == 1  # renumbered after this file's run
    assert store.query_results(int(runs.loc["toolgen", "id"])) == _results(2)
    assert store.metrics([int(runs.loc["toolgen", "id"])])["value"].tolist() == [0.9]
    assert sorted((t.id, t.system) for t in store.trajectories()) == [(1, "bm25"), (2, "toolgen"), (3, "embed")]
    assert store.votes().empty
