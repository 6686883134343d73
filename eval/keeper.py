"""Looking after a results store that a long-running process holds: regular checkpoints, and operator requests
(backup, flag, audit) from other processes.

DuckDB lets one process open a file for writing and no other process read it meanwhile, so `python -m eval
backup` cannot open the store the workbench holds. Operator commands therefore go through `on_store`: it opens the
store itself when it is free, and otherwise drops the request as a JSON file into `<store>.requests/`, where the
holding process's `StoreKeeper` performs it on its own connection and writes the answer beside it. Anyone who
may write that folder may ask, the same people who could copy the store file.

The keeper also checkpoints the store (`ResultsStore.checkpoint`) every few seconds when anything was written, so
votes reach the database file itself, not just its write-ahead log.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from eval.store import ResultsStore, StoreLockedError

CHECKPOINT_SECONDS = 5.0
POLL_SECONDS = 0.5
log = logging.getLogger("eval.keeper")


def requests_dir(db_path: str | Path) -> Path:
    """The folder where other processes leave requests for the process holding `db_path`."""
    return Path(f"{db_path}.requests")


def perform(store: ResultsStore, request: dict[str, Any]) -> dict[str, Any]:
    """Carry out one operator request on an open store; returns a JSON-serialisable answer.

    Requests: `{"command": "backup", "out": DIR}`, `{"command": "flag", "annotators": [...], "clients": [...],
    "reason": "..."}` (clients: client hashes, every annotator who voted from one is flagged), `{"command":
    "unflag", "annotators": [...]}`, `{"command": "audit"}`."""
    command = request.get("command")
    if command == "backup":
        return {"path": str(store.backup(request["out"]))}
    if command in ("flag", "unflag"):
        names = set(request.get("annotators", []))
        clients = set(request.get("clients", []))
        if clients:
            audit = store.audit()
            names |= {row.annotator for row in audit.itertuples() if clients & set((row.client_hashes or "").split())}
        if not names:
            raise ValueError("no annotator to " + command + (" (no vote came from those clients)" if clients else ""))
        if command == "flag":
            return {"flagged": sorted(names), "new": store.flag(names, request.get("reason", ""))}
        return {"unflagged": sorted(names), "were_flagged": store.unflag(names)}
    if command == "audit":
        audit = store.audit()
        for column in ("first_vote", "last_vote"):
            audit[column] = audit[column].astype(str)
        return {"annotators": audit.to_dict(orient="records"), "flagged": store.flagged()}
    raise ValueError(f"unknown request {command!r}; expected backup, flag, unflag or audit")


def on_store(db_path: str | Path, request: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    """Perform `request` on the store at `db_path`: directly when no process holds it, else by asking the
    `StoreKeeper` of the process that does (TimeoutError when none answers within `timeout` seconds)."""
    if not Path(db_path).exists():
        raise FileNotFoundError(f"no results store at {db_path}")
    try:
        store = ResultsStore(db_path)
    except StoreLockedError as error:
        return ask_keeper(db_path, request, timeout, str(error))
    with store:
        return perform(store, request)


def ask_keeper(
    db_path: str | Path, request: dict[str, Any], timeout: float = 60.0, locked_by: str = ""
) -> dict[str, Any]:
    """Leave `request` for the keeper of the process holding `db_path` and wait for its answer."""
    folder = requests_dir(db_path)
    folder.mkdir(exist_ok=True)
    name = uuid.uuid4().hex
    pending, answer = folder / f"{name}.json", folder / f"{name}.answer.json"
    partial = folder / f"{name}.json.partial"
    partial.write_text(json.dumps(request))
    partial.rename(pending)  # the keeper never sees half a request
    deadline = time.monotonic() + timeout
    while not answer.exists():
        if time.monotonic() > deadline:
            pending.unlink(missing_ok=True)
            raise TimeoutError(
                f"{db_path} is held by another process that did not answer within {timeout:g} s; "
                "only the workbench (python app.py) answers requests: stop the other process and "
                f"run the command again. {locked_by}".strip()
            )
        time.sleep(0.1)
    reply = json.loads(answer.read_text())
    answer.unlink()
    if not reply["ok"]:
        raise ValueError(reply["error"])
    return reply["result"]


class StoreKeeper:
    """A daemon thread that checkpoints `store` every `checkpoint_seconds` when it was written to, and performs
    the requests other processes leave in `requests_dir(store.path)`. `stop()` ends it (call before closing
    the store; `close()` checkpoints once more)."""

    def __init__(
        self, store: ResultsStore, checkpoint_seconds: float = CHECKPOINT_SECONDS, poll_seconds: float = POLL_SECONDS
    ):
        self.store, self.checkpoint_seconds, self.poll_seconds = store, checkpoint_seconds, poll_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="store-keeper", daemon=True)
        self._last_checkpoint = time.monotonic()

    def start(self) -> StoreKeeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.tick()
            except Exception:  # a failed checkpoint is retried next time; the app goes on
                log.exception("store keeper")

    def tick(self) -> None:
        """One round: answer waiting requests, then checkpoint if one is due."""
        self.serve_requests()
        now = time.monotonic()
        if self.store.unsaved_writes and now - self._last_checkpoint >= self.checkpoint_seconds:
            self.store.checkpoint()
            self._last_checkpoint = now

    def serve_requests(self) -> int:
        """Perform every waiting request and write its answer; returns how many there were."""
        folder = requests_dir(self.store.path)
        if not folder.is_dir():
            return 0
        served = 0
        for pending in sorted(folder.glob("*.json")):
            if pending.name.endswith(".answer.json"):
                continue
            try:
                request = json.loads(pending.read_text())
                reply = {"ok": True, "result": perform(self.store, request)}
            except FileNotFoundError:  # its sender gave up and took it back
                continue
            except Exception as error:  # noqa: BLE001 - the answer carries any failure back to the operator
                reply = {"ok": False, "error": f"{type(error).__name__}: {error}"}
            log.info("operator request %s: %s", pending.stem, "done" if reply["ok"] else reply["error"])
            partial = pending.with_name(f"{pending.stem}.answer.json.partial")
            partial.write_text(json.dumps(reply))
            partial.rename(pending.with_name(f"{pending.stem}.answer.json"))
            pending.unlink(missing_ok=True)
            served += 1
        return served
