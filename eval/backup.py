"""`python -m eval backup --db FILE --out DIR`: a consistent copy of a results store, even while the workbench
holds it open (then the workbench's store keeper writes the copy; see eval/keeper.py). Prints the copy's path."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.settings import DEFAULT_DB

from .keeper import on_store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=str(DEFAULT_DB), help="the results store to copy")
    parser.add_argument("--out", required=True, help="folder for the copy (<store>-<UTC time>.duckdb)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds to wait for the process holding the store to write the copy",
    )


def run(args: argparse.Namespace) -> int:
    try:
        reply = on_store(args.db, {"command": "backup", "out": str(Path(args.out).resolve())}, args.timeout)
    except TimeoutError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(reply["path"])
    return 0
