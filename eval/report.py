"""`python -m eval report --db FILE [--format markdown|csv]`: the stored retrieval metrics as one table."""
from __future__ import annotations

import argparse
import sys

from .retrieval_eval import DEFAULT_DB, HEADLINE
from .store import ResultsStore


def metrics_table(store: ResultsStore, names=HEADLINE):
    """Latest run per (dataset, setting, split, system): one row, one column per metric (mean, CI in text)."""
    frame = store.metrics()
    if frame.empty:
        return frame
    latest = frame.groupby(["dataset", "setting", "split", "system"])["run_id"].transform("max")
    frame = frame[(frame["run_id"] == latest) & frame["name"].isin(list(names) + ["latency_p50_ms"])]
    table = frame.pivot_table(index=["dataset", "setting", "split", "system"], columns="name", values="value")
    ordered = [n for n in list(names) + ["latency_p50_ms"] if n in table.columns]
    return table[ordered].reset_index().round(4)


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
        columns = list(table.columns)
        print("| " + " | ".join(columns) + " |")
        print("|" + "---|" * len(columns))
        for row in table.itertuples(index=False):
            print("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row) + " |")
    return 0
