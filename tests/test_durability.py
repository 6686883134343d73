"""Votes survive crashes and reach the database file: SIGKILL mid-stream, a clean close, the keeper's regular
checkpoints, and backups and flags while another process holds the store."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from eval.keeper import StoreKeeper, on_store, requests_dir
from eval.store import ResultsStore, StoredTrajectory

REPO = Path(__file__).resolve().parent.parent
N_TRAJECTORIES = 4  # one query, four systems: six pairs


def seeded(path: Path) -> list[int]:
    """A store at `path` holding four systems' trajectories of one query; returns their ids."""
    with ResultsStore(path) as store:
        return store.add_trajectories(
            StoredTrajectory(f"system-{i}", "ds", "q1", "the task", [{"kind": "thought"}])
            for i in range(N_TRAJECTORIES)
        )


def votes_in(path: Path) -> set[str]:
    with ResultsStore(path) as store:
        return set(store.votes().annotator)


# A writer that votes as fast as it can and prints each vote's annotator once `add_vote` has returned.
WRITER = textwrap.dedent("""
    import sys, time
    from eval.keeper import StoreKeeper
    from eval.store import ResultsStore
    store = ResultsStore(sys.argv[1])
    StoreKeeper(store, checkpoint_seconds=float(sys.argv[2]), poll_seconds=0.05).start()
    first, second = (int(x) for x in sys.argv[3:5])
    print("ready", flush=True)
    for i in range(10**9):
        assert store.add_vote(first, second, f"annotator-{i}", "A", "", client_hash="c", session_hash="s")
        print(f"annotator-{i}", flush=True)
        time.sleep(float(sys.argv[5]))
""")


def start_writer(path: Path, ids: list[int], checkpoint_seconds: float = 0.2, pause: float = 0.0):
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(checkpoint_seconds), str(ids[0]), str(ids[1]), str(pause)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout.readline().strip() == "ready"
    return writer


def read_acks(writer, count: int, timeout: float = 60.0) -> list[str]:
    acks, deadline = [], time.monotonic() + timeout
    while len(acks) < count:
        assert time.monotonic() < deadline, f"only {len(acks)} votes acknowledged in {timeout} s"
        acks.append(writer.stdout.readline().strip())
    return acks


@pytest.mark.slow
def test_sigkill_mid_stream_loses_no_acknowledged_vote(tmp_path):
    path = tmp_path / "store.duckdb"
    writer = start_writer(path, seeded(path))
    try:
        acknowledged = read_acks(writer, 300)  # checkpoints (every 0.2 s) happen while it writes
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)
    acknowledged += [line.strip() for line in writer.stdout if line.strip()]  # acks still in the pipe
    writer.stdout.close()
    assert writer.returncode == -signal.SIGKILL
    stored = votes_in(path)
    assert set(acknowledged) <= stored
    assert len(stored) - len(acknowledged) <= 1  # at most the vote being written when it died, never half a one


def test_after_a_clean_close_the_database_file_alone_holds_the_votes(tmp_path):
    path = tmp_path / "store.duckdb"
    first, second, *_ = seeded(path)
    with ResultsStore(path) as store:
        for i in range(50):
            store.add_vote(first, second, f"annotator-{i}", "B")
        assert store.unsaved_writes == 50
    assert not Path(f"{path}.wal").exists()
    alone = tmp_path / "copy" / "store.duckdb"
    alone.parent.mkdir()
    shutil.copy(path, alone)  # what anyone backing up the file would copy
    assert votes_in(alone) == {f"annotator-{i}" for i in range(50)}


def test_the_keeper_checkpoints_written_stores_regularly(tmp_path):
    path = tmp_path / "store.duckdb"
    first, second, *_ = seeded(path)
    store = ResultsStore(path)
    keeper = StoreKeeper(store, checkpoint_seconds=0.0)
    try:
        store.add_vote(first, second, "alice", "tie")
        assert store.unsaved_writes == 1
        keeper.tick()
        assert store.unsaved_writes == 0
        copy = tmp_path / "copy.duckdb"
        shutil.copy(path, copy)  # taken while the store is open: the checkpoint put the vote in the file
        assert votes_in(copy) == {"alice"}
    finally:
        store.close()


@pytest.mark.slow
def test_backup_and_flags_while_another_process_writes_the_store(tmp_path):
    path, out = tmp_path / "store.duckdb", tmp_path / "backups"
    ids = seeded(path)
    writer = start_writer(path, ids, checkpoint_seconds=1.0, pause=0.01)
    try:
        read_acks(writer, 20)
        backup = subprocess.run(
            [sys.executable, "-m", "eval", "backup", "--db", str(path), "--out", str(out), "--timeout", "60"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert backup.returncode == 0, backup.stderr
        copy = Path(backup.stdout.strip())
        assert copy.parent == out and copy.suffix == ".duckdb"
        flagged = on_store(path, {"command": "flag", "annotators": ["annotator-3"], "reason": "test"}, timeout=60)
        assert flagged == {"flagged": ["annotator-3"], "new": 1}
        audit = on_store(path, {"command": "audit"}, timeout=60)
        assert audit["flagged"] == {"annotator-3": "test"} and audit["annotators"][0]["client_hashes"] == "c"
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)
        writer.stdout.close()
    assert not list(requests_dir(path).iterdir())  # every request answered and collected
    with ResultsStore(copy) as restored:  # a consistent store: votes point at stored trajectories
        votes = restored.votes()
        assert len(votes) >= 20 and set(votes.trajectory_a) | set(votes.trajectory_b) <= set(ids)
    with ResultsStore(path) as store:
        assert len(store.votes(include_flagged=False)) == len(store.votes()) - 1


def test_operator_commands_open_a_free_store_themselves(tmp_path, capsys):
    from eval.__main__ import main

    path = tmp_path / "store.duckdb"
    first, second, third, _ = seeded(path)
    with ResultsStore(path) as store:
        store.add_vote(first, second, "bob", "A", client_hash="c1")
        store.add_vote(first, third, "eve", "B", client_hash="c2")
        store.add_vote(second, third, "mallory", "B", client_hash="c2")
    assert main(["flag", "--db", str(path), "--client", "c2", "--reason", "one address, two names"]) == 0
    assert json.loads(capsys.readouterr().out) == {"flagged": ["eve", "mallory"], "new": 2}
    assert main(["flag", "--db", str(path), "mallory", "--remove"]) == 0
    capsys.readouterr()
    assert main(["flag", "--db", str(path)]) == 0
    audit = capsys.readouterr().out.splitlines()
    assert audit[0].startswith("annotator\tvotes") and len(audit) == 4
    assert [line.split("\t")[6] for line in audit[1:]] == ["False", "True", "False"]  # bob, eve, mallory
    assert main(["backup", "--db", str(path), "--out", str(tmp_path / "out")]) == 0
    assert votes_in(Path(capsys.readouterr().out.strip())) == {"bob", "eve", "mallory"}
    assert main(["backup", "--db", str(tmp_path / "missing.duckdb"), "--out", str(tmp_path)]) == 2
    assert "no results store" in capsys.readouterr().err


def test_a_request_nobody_answers_times_out_and_is_taken_back(tmp_path):
    path = tmp_path / "store.duckdb"
    seeded(path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from eval.store import ResultsStore; "
            "s = ResultsStore(sys.argv[1]); print('ready', flush=True); time.sleep(120)",
            str(path),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(TimeoutError, match="did not answer"):
            on_store(path, {"command": "audit"}, timeout=1.0)
    finally:
        holder.kill()
        holder.wait(timeout=30)
        holder.stdout.close()
    assert not list(requests_dir(path).iterdir())


@pytest.mark.slow
def test_the_workbench_closes_its_store_cleanly_on_sigterm(tmp_path, smollm2_tokenizer_dir):
    """app.py end to end: invite tokens from a file, a vote through the API, SIGTERM, then the .duckdb file alone
    holds the vote and the salt file sits beside it."""
    import socket

    from gradio_client import Client
    from transformers import AutoTokenizer

    from core.model import ToolGenModel
    from core.tiny import tiny_llama
    from core.tools import Tool, ToolCatalog

    tokenizer = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)
    tools = ToolCatalog(
        [
            Tool(
                id="Files&&ls",
                category="files",
                tool_name="Files",
                api_name="ls",
                description="List files.",
                parameters={"type": "object", "properties": {}},
                source="test",
            )
        ]
    )
    model = ToolGenModel.from_base(tools, model=tiny_llama(len(tokenizer) + 8), tokenizer=tokenizer).save(
        tmp_path / "model"
    )
    path = tmp_path / "store.duckdb"
    seeded(path)
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("a-long-invite-token-0001 Ann\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {key: value for key, value in os.environ.items() if key not in ("TOOLGEN_VOTE_SALT", "SPACE_ID")}
    app = subprocess.Popen(
        [
            sys.executable,
            "app.py",
            "--model",
            str(model),
            "--db",
            str(path),
            "--port",
            str(port),
            "--invite-tokens",
            str(tokens),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline, client = time.monotonic() + 180, None
        while client is None:
            assert app.poll() is None and time.monotonic() < deadline, app.stderr.read() if app.poll() else "slow"
            try:
                client = Client(f"http://127.0.0.1:{port}/", verbose=False)
            except Exception:  # noqa: BLE001 - not listening yet
                time.sleep(1)
        assert "<b>ann</b>" in client.predict("a-long-invite-token-0001", api_name="/next_pair")[0]
        assert client.predict("A is better", "", api_name="/vote")[0].startswith("Vote saved.")
    finally:
        app.send_signal(signal.SIGTERM)
        returncode = app.wait(timeout=60)
        app.stderr.close()
    assert returncode == 0
    assert not Path(f"{path}.wal").exists() and Path(f"{path}.salt").stat().st_size == 64
    alone = tmp_path / "alone.duckdb"
    shutil.copy(path, alone)
    assert votes_in(alone) == {"ann"}
