"""Load test of the workbench: annotators, chat users and beam inspections at once, latency per endpoint as JSON.

    python scripts/load_test.py [--model DIR] [--annotators 20] [--chat 4] [--beam 4] [--viewers 2]
                                [--duration 90] [--drain 120] [--think 0.5] [--json-out FILE]
    python scripts/load_test.py --url http://127.0.0.1:7860/ ...   # a workbench already running on this machine

Without --url it starts `app.py` on 127.0.0.1 (a free port) over a temporary results store seeded with 10 queries
x 3 systems' trajectories, with annotation rate limits off (every client shares one address; the limits are
tested in tests/test_trust.py), and stops it at the end. The model defaults to an untrained SmolLM2 with the BFCL
tool tokens (built once into cache/load-test-model): it costs the same per request as a trained one, and an
untrained agent rarely finishes early, so chat requests run to their step limit.

Clients, each its own gradio_client session: annotators loop next_pair -> vote (think time between calls; a new
session and name when one runs out of pairs), chat users loop new_conversation -> chat (4 tool calls, 5 beams),
beam users loop inspect (5 beams, k = 5), viewers refresh the leaderboard every 2 s. New requests stop after
--duration seconds; requests in flight get --drain seconds, then the run ends whatever is left. Loopback only.

Prints one JSON object: per endpoint n, errors, p50/p95/max seconds (a model request's time includes its wait in
the queue), the largest queue position and estimate the model users were shown, and the targets
(/vote and /next_pair p95 <= 0.5 s, /leaderboard p95 <= 1 s).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

from core.settings import CACHE_DIR, REPO_ROOT

SYSTEMS = ("toolgen", "retrieve-read", "gpt-3.5-reference")
N_QUERIES = 10
CHAT_MESSAGES = [
    "What is the square root of 1764?",
    "List the files in my home folder.",
    "What is the current stock price of NVDA?",
    "Create a new folder called drafts.",
]
BEAM_QUERIES = [
    "list the files in my home folder",
    "add two numbers",
    "buy 10 shares of NVDA",
    "read the contents of notes.txt",
]
TARGETS = {"/vote": 0.5, "/next_pair": 0.5, "/leaderboard": 1.0}


# gradio_client opens a new httpx client per request, and each builds a TLS context (CA bundle parsed) even for
# plain http: most of the load test's own CPU. One shared context makes the client cheap, so that it measures
# the server and not itself.
TLS = ssl.create_default_context()


def connect(url: str):
    """A gradio_client session (generous timeout: many sessions connect at once)."""
    from gradio_client import Client

    return Client(url, verbose=False, ssl_verify=TLS, httpx_kwargs={"timeout": 120})


def untrained_model() -> Path:
    """SmolLM2 with every BFCL tool as a new token, untrained (the ToolGen initialisation), built once."""
    from core.bfcl import load_bfcl_catalog
    from core.model import ToolGenModel

    target = CACHE_DIR / "load-test-model"
    if not (target / "toolgen.json").exists():
        print(f"building an untrained SmolLM2 + BFCL tool tokens into {target} (once)", file=sys.stderr)
        partial = target.with_name(target.name + ".partial")
        ToolGenModel.from_base(load_bfcl_catalog()).save(partial)
        partial.rename(target)
    return target


def seed_store(path: Path) -> None:
    """N_QUERIES queries x 3 systems' trajectories of a few steps each, as agent runs store them."""
    from eval.store import ResultsStore, StoredTrajectory

    def steps(system: str, q: int) -> list[dict]:
        return [
            {"kind": "thought", "turn": 0, "step": 0, "text": f"{system} plans how to answer task {q}."},
            {
                "kind": "action",
                "turn": 0,
                "step": 0,
                "tool_id": "MathAPI&&square_root",
                "code": "",
                "log_prob": -0.2,
                "alternatives": [],
            },
            {
                "kind": "arguments",
                "turn": 0,
                "step": 0,
                "tool_id": "MathAPI&&square_root",
                "arguments": {"number": 1764 + q},
                "text": "",
                "problems": [],
            },
            {
                "kind": "observation",
                "turn": 0,
                "step": 0,
                "tool_id": "MathAPI&&square_root",
                "content": json.dumps({"result": 42 + q}),
                "ok": True,
                "error": None,
                "simulated": False,
                "executed": True,
            },
            {"kind": "final_answer", "turn": 0, "step": 1, "text": f"The answer is {42 + q}."},
        ]

    with ResultsStore(path) as store:
        store.add_trajectories(
            StoredTrajectory(
                system,
                "bfcl",
                f"q{q}",
                f"Task {q}: square root of {1764 + q}?",
                steps(system, q),
                final_answer=f"The answer is {42 + q}.",
            )
            for q in range(N_QUERIES)
            for system in SYSTEMS
        )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_app(model: Path, db: Path, timeout: float) -> tuple[subprocess.Popen, str]:
    """`app.py` on a free loopback port; returns (process, url) once it answers."""
    port = free_port()
    log = open(db.with_suffix(".log"), "w")
    app = subprocess.Popen(
        [sys.executable, "app.py", "--model", str(model), "--db", str(db), "--port", str(port), "--rate-limits", "off"],
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"},
    )
    url, deadline = f"http://127.0.0.1:{port}/", time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app.poll() is not None:
            raise RuntimeError(f"app.py exited with {app.returncode}; see {log.name}")
        try:
            urllib.request.urlopen(url + "config", timeout=5)
            return app, url
        except OSError:
            time.sleep(1)
    app.terminate()
    raise TimeoutError(f"app.py did not answer within {timeout:g} s; see {log.name}")


class Recorder:
    """Latencies and errors per endpoint, plus the queue positions model users were shown."""

    def __init__(self):
        self.seconds, self.errors = defaultdict(list), defaultdict(list)
        self.queue: dict[str, list[tuple[int, float | None]]] = defaultdict(list)
        self._lock = threading.Lock()

    def time(self, endpoint: str, call):
        started = time.perf_counter()
        try:
            result = call()
        except Exception as error:  # noqa: BLE001 - every failure is counted and reported
            with self._lock:
                self.errors[endpoint].append(f"{type(error).__name__}: {error}"[:200])
            return None
        with self._lock:
            self.seconds[endpoint].append(time.perf_counter() - started)
        return result

    def summary(self) -> dict:
        def percentile(values, q):
            ordered = sorted(values)
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3) if ordered else None

        endpoints = {}
        for endpoint in sorted(set(self.seconds) | set(self.errors)):
            values = self.seconds[endpoint]
            endpoints[endpoint] = {
                "n": len(values),
                "errors": len(self.errors[endpoint]),
                "p50_s": percentile(values, 0.5),
                "p95_s": percentile(values, 0.95),
                "max_s": round(max(values), 3) if values else None,
            }
            if self.errors[endpoint]:
                endpoints[endpoint]["first_error"] = self.errors[endpoint][0]
        queue = {
            endpoint: {
                "max_position": max(rank for rank, _ in shown),
                "max_estimate_s": max((round(eta, 1) for _, eta in shown if eta is not None), default=None),
            }
            for endpoint, shown in self.queue.items()
            if shown
        }
        return {"endpoints": endpoints, "model_queue_shown": queue}


def watch_queue(recorder: Recorder, endpoint: str, job) -> object:
    """Wait for a submitted job, noting the queue positions and estimates it was shown; returns its result."""
    while not job.done():
        status = job.status()
        if status.code.name == "IN_QUEUE" and status.rank is not None:
            with recorder._lock:
                recorder.queue[endpoint].append((status.rank, status.eta))
        time.sleep(0.2)
    return job.result()


def run(args: argparse.Namespace, url: str) -> dict:
    recorder, stop = Recorder(), time.monotonic() + args.duration

    def annotator(index: int) -> None:
        session = 0
        while time.monotonic() < stop:
            client, name = connect(url), f"annotator-{index}-{session}"
            session += 1
            while time.monotonic() < stop:
                shown = recorder.time("/next_pair", lambda c=client, n=name: c.predict(n, api_name="/next_pair"))
                if shown is None or "Nothing left" in shown[0]:
                    break
                time.sleep(args.think)
                recorder.time("/vote", lambda c=client: c.predict("A is better", "", api_name="/vote"))
                time.sleep(args.think)

    def chat_user(index: int) -> None:
        client = connect(url)
        for turn in range(10**6):
            if time.monotonic() >= stop:
                return
            client.predict(api_name="/new_conversation")
            message = CHAT_MESSAGES[(index + turn) % len(CHAT_MESSAGES)]
            recorder.time(
                "/chat",
                lambda m=message: watch_queue(recorder, "/chat", client.submit(m, [], True, 4, 5, api_name="/chat")),
            )

    def beam_user(index: int) -> None:
        client = connect(url)
        for turn in range(10**6):
            if time.monotonic() >= stop:
                return
            query = BEAM_QUERIES[(index + turn) % len(BEAM_QUERIES)]
            recorder.time(
                "/inspect",
                lambda q=query: watch_queue(
                    recorder, "/inspect", client.submit(q, 5, 5, "all tools", None, "", api_name="/inspect")
                ),
            )

    def viewer(index: int) -> None:
        client = connect(url)
        while time.monotonic() < stop:
            recorder.time("/leaderboard", lambda: client.predict(api_name="/leaderboard"))
            time.sleep(2.0)

    workers = (
        [(annotator, i) for i in range(args.annotators)]
        + [(chat_user, i) for i in range(args.chat)]
        + [(beam_user, i) for i in range(args.beam)]
        + [(viewer, i) for i in range(args.viewers)]
    )
    threads = [threading.Thread(target=work, args=(i,), daemon=True) for work, i in workers]  # daemons: never
    for thread in threads:  # block the exit
        thread.start()
    deadline = stop + args.drain
    while time.monotonic() < deadline and any(thread.is_alive() for thread in threads):
        time.sleep(0.5)
    unfinished = sum(thread.is_alive() for thread in threads)
    summary = recorder.summary()
    summary["clients_still_waiting_at_the_end"] = unfinished
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running workbench on this machine (127.0.0.1 or localhost)")
    parser.add_argument("--model", help="checkpoint for the started app (default: untrained SmolLM2 + BFCL tools)")
    parser.add_argument("--annotators", type=int, default=20)
    parser.add_argument("--chat", type=int, default=4)
    parser.add_argument("--beam", type=int, default=4)
    parser.add_argument("--viewers", type=int, default=2, help="clients refreshing the leaderboard every 2 s")
    parser.add_argument("--duration", type=float, default=90.0, help="seconds of new requests")
    parser.add_argument("--drain", type=float, default=120.0, help="seconds left to requests still in flight")
    parser.add_argument("--think", type=float, default=0.5, help="annotators' pause between calls, seconds")
    parser.add_argument("--startup-timeout", type=float, default=300.0)
    parser.add_argument("--json-out", help="also write the JSON summary to this file")
    args = parser.parse_args(argv)
    if args.url and not args.url.startswith(("http://127.0.0.1", "http://localhost")):
        parser.error("--url must be a loopback address (http://127.0.0.1:PORT/ or http://localhost:PORT/)")
    started = time.monotonic()
    app = None
    with tempfile.TemporaryDirectory(prefix="load-test-") as folder:
        if args.url:
            url = args.url if args.url.endswith("/") else args.url + "/"
        else:
            model = Path(args.model) if args.model else untrained_model()
            db = Path(folder) / "load-test.duckdb"
            seed_store(db)
            app, url = start_app(model, db, args.startup_timeout)
        try:
            summary = run(args, url)
        finally:
            if app is not None:
                app.send_signal(signal.SIGTERM)
                try:
                    app.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    app.kill()
    summary["config"] = {
        "annotators": args.annotators,
        "chat": args.chat,
        "beam": args.beam,
        "viewers": args.viewers,
        "duration_s": args.duration,
        "think_s": args.think,
        "model": args.url or str(args.model or "untrained SmolLM2 + BFCL tool tokens"),
        "cpus": len(os.sched_getaffinity(0)),
        "load_average": [round(x, 1) for x in os.getloadavg()],
    }
    summary["targets_met"] = {
        f"{endpoint} p95 <= {limit} s": (summary["endpoints"].get(endpoint, {}).get("p95_s") or float("inf")) <= limit
        for endpoint, limit in TARGETS.items()
    }
    summary["wall_s"] = round(time.monotonic() - started, 1)
    text = json.dumps(summary, indent=1)
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
