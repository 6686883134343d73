"""`python -m eval flag --db FILE [NAME ...] [--client HASH ...] [--reason TEXT] [--remove]`: flag annotators, so
the leaderboard leaves their votes out (they stay stored), or lift flags with `--remove`. Without names or clients
it prints the audit table: per annotator, votes, distinct client and session fingerprints, first and last vote,
and the flag. Works while the workbench holds the store (see eval/keeper.py)."""

from __future__ import annotations

import argparse
import json
import sys

from core.settings import DEFAULT_DB

from .keeper import on_store

AUDIT_COLUMNS = ("annotator", "votes", "clients", "sessions", "first_vote", "last_vote", "flagged", "client_hashes")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("annotators", nargs="*", metavar="NAME", help="annotator names (as stored: normalised)")
    parser.add_argument("--db", default=str(DEFAULT_DB), help="the results store")
    parser.add_argument(
        "--client",
        action="append",
        default=[],
        metavar="HASH",
        help="a client fingerprint from the audit table: flags every annotator who voted from it",
    )
    parser.add_argument("--reason", default="", help="why (kept with the flag)")
    parser.add_argument("--remove", action="store_true", help="lift the flags instead")
    parser.add_argument("--json", action="store_true", help="print the answer as JSON")
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for the process holding the store to answer"
    )


def run(args: argparse.Namespace) -> int:
    if args.annotators or args.client:
        request = {
            "command": "unflag" if args.remove else "flag",
            "annotators": args.annotators,
            "clients": args.client,
            "reason": args.reason,
        }
    else:
        request = {"command": "audit"}
    try:
        reply = on_store(args.db, request, args.timeout)
    except TimeoutError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json or request["command"] != "audit":
        print(json.dumps(reply, ensure_ascii=False, indent=1))
        return 0
    print("\t".join(AUDIT_COLUMNS))
    for row in reply["annotators"]:
        print("\t".join(str(row[column]) for column in AUDIT_COLUMNS))
    return 0
