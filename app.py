"""Entry point of the ToolGen Workbench (also the Hugging Face Spaces `app_file`).

    python app.py [--model DIR] [--db FILE] [--port N]

Defaults come from the environment (TOOLGEN_MODEL, TOOLGEN_DB, PORT), else `models/toolgen-bfcl` and
`results/workbench.duckdb`. The app starts without a model too: the model tabs then say how to build one.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

from app import CSS, THEME, build_demo
from app.shared import ModelUnavailable, Workbench
from core.settings import DEFAULT_DB, DEFAULT_MODEL_DIR, PORT
from eval.store import StoreLockedError

QUEUE_SIZE = 64  # requests waiting beyond this are refused with a "too busy" message


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="ToolGen Workbench")
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR),
                        help="ToolGen checkpoint directory (env TOOLGEN_MODEL)")
    parser.add_argument("--db", default=str(DEFAULT_DB),
                        help="DuckDB results file (env TOOLGEN_DB); this process holds it open")
    parser.add_argument("--port", type=int, default=PORT, help="port (env PORT)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = parse_args(argv)
    try:
        workbench = Workbench(args.model, args.db)
    except StoreLockedError as error:  # another process (an evaluation run?) holds the results file
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        workbench.toolgen()  # load before the first request; the tabs report a missing model themselves
    except ModelUnavailable as error:
        logging.getLogger("workbench").warning("%s", error)
    demo = build_demo(workbench)
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=4)
    demo.launch(server_port=args.port, theme=THEME, css=CSS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
