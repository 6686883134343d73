"""`python -m eval report --db FILE [--format markdown|csv]`: the stored retrieval metrics as one table."""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from core.settings import DEFAULT_DB

from .retrieval_eval import HEADLINE
from .store import ResultsStore


def metrics_table(store: ResultsStore, names=HEADLINE) -> pd.DataFrame:
    """Latest run per (dataset, setting, split, system): one row, one column per metric (the mean)."""
    wanted = list(names) + ["latency_p50_ms"]
    frame = store.metrics(latest=True)
    frame = frame[frame["name"].isin(wanted)]
    if frame.empty:
        return frame
    table = frame.pivot_table(index=["dataset", "setting", "split", "system"], columns="name", values="value")
    return table[[n for n in wanted if n in table.columns]].reset_index().round(4)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=str(DEFAULT_DB))
    parser.add_argument("--format", choices=("markdown", "csv"), default="markdown")


def run(args: argparse.Namespace) -> int:
    with ResultsStore(args.db) as store:
        table = metrics_table(store)
    if table.empty:
        print("no stored metrics", file=sys.stderr)
        return 1
    if args.format == "csv":
        table.to_csv(sys.stdout, index=False)
    else:
        print(table.to_markdown(index=False, floatfmt=".3f"))
    return 0
