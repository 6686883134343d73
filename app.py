"""Entry point of the ToolGen Workbench (also the Hugging Face Spaces `app_file`).

    python app.py [--model DIR|USER/REPO] [--db FILE] [--port N] [--annotators open|invite|oauth]
                  [--invite-tokens FILE] [--rate-limits SPEC] [--behind-proxy] [--votes-repo USER/REPO]

Defaults come from the environment (TOOLGEN_MODEL, TOOLGEN_DB, PORT, TOOLGEN_ANNOTATORS, TOOLGEN_INVITE_TOKENS,
TOOLGEN_RATE_LIMITS, TOOLGEN_VOTES_REPO), else `models/toolgen-bfcl` when it holds a model, otherwise the compact
model shipped in `assets/model`, and `results/workbench.duckdb` (on a Space with persistent storage
`/data/workbench.duckdb`). A new (empty) results file is first loaded from the shipped snapshot `assets/results`
and the logged votes are replayed into it; every vote is logged to `<db>.votes/` (eval/vote_log.py), mirrored to
the dataset repo when one is named. The app starts without a model too: the model tabs then say how to build one.
While it runs, a store keeper checkpoints the results store every few seconds and answers `python -m eval backup |
flag`; on exit (Ctrl-C or SIGTERM) the store is closed cleanly.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

import torch

from app import CSS, THEME, build_demo, oauth_enabled
from app.identity import MODES, AnnotatorPolicy, load_invites, load_salt, salt_path
from app.model_worker import start_worker, stop_worker
from app.ratelimit import RateLimits
from app.shared import ModelUnavailable, Workbench
from core.settings import DEFAULT_DB, PORT, SNAPSHOT_DIR, served_model_dir
from eval import snapshot, vote_log
from eval.keeper import StoreKeeper
from eval.store import StoreLockedError

QUEUE_SIZE = 64  # requests waiting beyond this are refused with a "too busy" message


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="ToolGen Workbench")
    parser.add_argument(
        "--model",
        default=str(served_model_dir()),
        help="ToolGen checkpoint directory, full or compact, or a Hugging Face repo id (env "
        "TOOLGEN_MODEL; default models/toolgen-bfcl when built, else assets/model)",
    )
    parser.add_argument(
        "--db", default=str(DEFAULT_DB), help="DuckDB results file (env TOOLGEN_DB); this process holds it open"
    )
    parser.add_argument("--port", type=int, default=PORT, help="port (env PORT)")
    parser.add_argument(
        "--annotators",
        choices=MODES,
        default=os.environ.get("TOOLGEN_ANNOTATORS"),
        help="who may judge (env TOOLGEN_ANNOTATORS): oauth = Hugging Face sign-in required "
        "(default on a Space with hf_oauth), invite = invite tokens (default with "
        "--invite-tokens), open = typed names (default elsewhere)",
    )
    parser.add_argument(
        "--invite-tokens",
        default=os.environ.get("TOOLGEN_INVITE_TOKENS"),
        metavar="FILE",
        help="invite tokens, one 'TOKEN [NAME]' per line (env TOOLGEN_INVITE_TOKENS)",
    )
    parser.add_argument(
        "--rate-limits",
        default=os.environ.get("TOOLGEN_RATE_LIMITS", str(RateLimits())),
        metavar="SPEC",
        help="annotation rate limits, NAME=COUNT/SECONDS or NAME=off, comma-separated, "
        "or 'off' (env TOOLGEN_RATE_LIMITS; default %(default)s)",
    )
    parser.add_argument(
        "--behind-proxy",
        action="store_true",
        default=bool(os.environ.get("SPACE_ID")),
        help="the client address is the last X-Forwarded-For entry (default on a Space)",
    )
    parser.add_argument(
        "--votes-repo",
        default=os.environ.get("TOOLGEN_VOTES_REPO"),
        metavar="USER/REPO",
        help="Hugging Face dataset repo the vote log is uploaded to and, for a new results file, "
        "restored from (env TOOLGEN_VOTES_REPO; needs HF_TOKEN with write access)",
    )
    return parser.parse_args(argv)


def open_workbench(model: str, db: str, votes_repo: str | None = None) -> tuple[Workbench, vote_log.VoteLog]:
    """The workbench over `model` and the results file `db`, and the log its votes go to. A new or empty `db` is
    first loaded from the shipped results snapshot, and the logged votes (downloaded from `votes_repo` when given)
    are cast into it again."""
    log = logging.getLogger("workbench")
    votes = vote_log.votes_dir(db)
    fresh = snapshot.is_empty(db)
    if fresh and (loaded := snapshot.seed(db, SNAPSHOT_DIR)):
        log.info(
            "new results file %s: loaded the snapshot %s (%s)",
            db,
            SNAPSHOT_DIR,
            ", ".join(f"{n} {table}" for table, n in loaded.items()),
        )
    if fresh and votes_repo:
        try:
            log.info("%d vote files fetched from %s", vote_log.download(votes_repo, votes), votes_repo)
        except Exception as error:  # the hub is optional: start with the local log
            log.warning("could not fetch the votes of %s: %s", votes_repo, error)
    workbench = Workbench(model, db)
    if fresh and votes.exists():
        log.info("%d logged votes replayed into %s", vote_log.replay(workbench.store, votes), db)
    return workbench, vote_log.VoteLog(workbench.store, votes, votes_repo)


def annotator_policy(args: argparse.Namespace) -> AnnotatorPolicy:
    """The annotation policy the arguments ask for; ValueError/OSError for a bad token file."""
    mode = args.annotators or ("oauth" if oauth_enabled() else "invite" if args.invite_tokens else "open")
    invites = load_invites(args.invite_tokens) if args.invite_tokens else {}
    return AnnotatorPolicy(mode, invites, load_salt(salt_path(args.db)), trust_forwarded=args.behind_proxy)


def model_threads() -> int:
    """Torch threads for model work (the model worker's): every core this process may use but one, kept for the web
    server."""
    return max(1, len(os.sched_getaffinity(0)) - 1)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = parse_args(argv)
    try:
        limits = RateLimits.parse(args.rate_limits)
        workbench, votes = open_workbench(args.model, args.db, args.votes_repo)
    except (ValueError, StoreLockedError) as error:  # StoreLockedError: another process holds the results file
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        policy = annotator_policy(args)
    except (OSError, ValueError) as error:
        votes.close()
        workbench.close()
        print(f"error: {error}", file=sys.stderr)
        return 2
    torch.set_num_threads(model_threads())
    try:
        workbench.toolgen()  # load before the first request; the tabs report a missing model themselves
    except ModelUnavailable as error:
        logging.getLogger("workbench").warning("%s", error)
    logging.getLogger("workbench").info(
        "annotators: %s; rate limits: %s; torch threads: %d", policy.mode, limits, torch.get_num_threads()
    )
    keeper = StoreKeeper(workbench.store)
    try:
        demo = build_demo(workbench, policy, limits)
        # Gradio recomputes a pandas summary of up to 10,000 past events after every queued event (its monitoring
        # dashboard, unused here): a sixth of the server's CPU under the load test. Every 500 events is plenty.
        os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "500")
        demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=4)
        start_worker(model_threads())  # after the model and the handlers exist, before any server or keeper thread
        keeper.start()
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a stop request closes the store cleanly, as Ctrl-C does
        demo.launch(server_port=args.port, theme=THEME, css=CSS)
    finally:
        stop_worker()
        keeper.stop()
        votes.close()
        workbench.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
