"""Votes that outlive the machine: every acknowledged vote appended as one JSON line to a folder, which a
Hugging Face dataset repo can mirror, and replayed into a new results store after a restart.

A Space's disk is wiped on restart. Either keep the store itself on persistent storage (`--db
/data/workbench.duckdb`, the default on a Space that has /data), or name a dataset repo (`--votes-repo
user/votes`, env TOOLGEN_VOTES_REPO): huggingface_hub's `CommitScheduler` then uploads the folder every few minutes
and at exit, and a fresh start downloads it and replays the votes (`replay`) before taking new ones. The
upload and download are thin calls into huggingface_hub and untested here (no network); the local log and the
replay are tested.

Each process writes its own file `votes-<UTC start>-<random>.jsonl` (files are only appended to, so uploads never
conflict). A line holds the vote as stored (`ResultsStore.add_vote`: pair in canonical order, vote, comment,
fingerprints, time) plus the system and dataset of both trajectories, which `replay` checks before re-casting it;
the store refuses a second vote of one annotator on one pair, so replaying twice adds nothing.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

from .store import ResultsStore

UPLOAD_MINUTES = 5
log = logging.getLogger("eval.vote_log")


def votes_dir(db_path: str | Path) -> Path:
    """The vote log folder of a results store: `<store>.votes/` beside it."""
    return Path(f"{db_path}.votes")


class VoteLog:
    """Appends each vote `store` acknowledges to this process's JSONL file in `directory` (a store listener);
    with `repo_id`, a CommitScheduler mirrors the folder into that Hugging Face dataset repo."""

    def __init__(self, store: ResultsStore, directory: str | Path, repo_id: str | None = None):
        self.store, self.directory = store, Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.path = self.directory / f"votes-{stamp}-{uuid.uuid4().hex[:8]}.jsonl"
        self._lock = threading.Lock()
        self.scheduler = None
        if repo_id:
            from huggingface_hub import CommitScheduler

            self.scheduler = CommitScheduler(
                repo_id=repo_id,
                repo_type="dataset",
                folder_path=self.directory,
                path_in_repo="votes",
                every=UPLOAD_MINUTES,
                private=True,
                allow_patterns=["*.jsonl"],
            )
        store.vote_listeners.append(self.append)

    def append(self, vote: dict) -> None:
        """Write one stored vote as a JSON line (flushed); a write failure is logged, the vote stays stored."""
        systems = {t.id: t for t in self.store.trajectories(query_id=vote["query_id"])}
        a, b = systems[vote["trajectory_a"]], systems[vote["trajectory_b"]]
        line = json.dumps(
            {
                **vote,
                "created_at": vote["created_at"].isoformat(),
                "dataset": a.dataset,
                "system_a": a.system,
                "system_b": b.system,
            },
            ensure_ascii=False,
        )
        lock = self.scheduler.lock if self.scheduler else self._lock  # no upload reads a half-written line
        try:
            with lock, open(self.path, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")
        except OSError:
            log.exception(
                "vote of %s on %s/%s stored but not logged to %s",
                vote["annotator"],
                vote["trajectory_a"],
                vote["trajectory_b"],
                self.path,
            )

    def close(self) -> None:
        """Stop logging; with a repo, upload what is left now."""
        if self.append in self.store.vote_listeners:
            self.store.vote_listeners.remove(self.append)
        if self.scheduler is not None:
            self.scheduler.push_to_hub()
            self.scheduler.stop()


def read_votes(directory: str | Path) -> list[dict]:
    """Every logged vote in the folder's JSONL files, file by file in name order."""
    votes = []
    for path in sorted(Path(directory).glob("*.jsonl")):
        with open(path, encoding="utf-8") as handle:
            votes += [json.loads(line) for line in handle if line.strip()]
    return votes


def replay(store: ResultsStore, directory: str | Path) -> int:
    """Cast the logged votes into `store` again (call before a `VoteLog` listens, so nothing is logged twice);
    a vote whose trajectories are not the logged ones is skipped with a warning. Returns how many were stored."""
    stored = 0
    for vote in read_votes(directory):
        trajectories = {t.id: t for t in store.trajectories(query_id=vote["query_id"])}
        a, b = trajectories.get(vote["trajectory_a"]), trajectories.get(vote["trajectory_b"])
        if (
            a is None
            or b is None
            or (a.system, b.system, a.dataset) != (vote["system_a"], vote["system_b"], vote["dataset"])
        ):
            log.warning(
                "logged vote of %s on %s/%s skipped: those trajectories are not in this store",
                vote["annotator"],
                vote["trajectory_a"],
                vote["trajectory_b"],
            )
            continue
        stored += store.add_vote(
            vote["trajectory_a"],
            vote["trajectory_b"],
            vote["annotator"],
            vote["vote"],
            vote.get("comment") or "",
            client_hash=vote.get("client_hash"),
            session_hash=vote.get("session_hash"),
        )
    return stored


def download(repo_id: str, directory: str | Path) -> int:
    """Copy the vote files of a Hugging Face dataset repo (its `votes/` folder) into `directory`, keeping files
    already there; returns how many were copied (0 when the repo does not exist yet). Untested here (no network)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import RepositoryNotFoundError

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    try:
        fetched = Path(snapshot_download(repo_id, repo_type="dataset", allow_patterns=["votes/*.jsonl"]))
    except RepositoryNotFoundError:
        return 0
    new = [path for path in sorted((fetched / "votes").glob("*.jsonl")) if not (directory / path.name).exists()]
    for path in new:
        shutil.copyfile(path, directory / path.name)
    return len(new)
