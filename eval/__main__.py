"""Command line: `python -m eval retrieval | agent | report | train-baseline | backup | flag | snapshot | speed |
teacher | lexical-sweep |
document-text | scale | add-tools-bench` (see README)."""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> module providing `add_arguments(parser)` and `run(args) -> int`
SUBCOMMANDS = {
    "retrieval": ("eval.retrieval_eval", "retrieval evaluation: ToolGen vs BM25 vs embeddings"),
    "agent": ("eval.agent_eval", "end-to-end agent evaluation"),
    "report": ("eval.report", "print stored metrics as a table"),
    "train-baseline": ("eval.train_baseline", "train a baseline the evaluations load (embedding-ft, retrieve-read)"),
    "backup": ("eval.backup", "consistent copy of a results store, also while the workbench holds it"),
    "flag": ("eval.flag", "flag annotators (left out of the leaderboard) or print the annotation audit"),
    "snapshot": ("eval.snapshot", "export a results store as Parquet files, or import such a snapshot"),
    "speed": ("eval.bench_speed", "retrieval latency/throughput against MiniLM, or training tokens/s"),
    "teacher": ("eval.teacher", "soft targets for distillation (`python -m core build --teacher FILE`)"),
    "lexical-sweep": ("eval.lexical_sweep", "ToolGen's lexical-prior weight: NDCG for a grid of weights"),
    "document-text": ("eval.document_text", "which tool text the embedding baseline indexes, on training queries"),
    "scale": ("eval.scale", "the scale curve: ToolBench models over 2.5k, 10k and ~47k tool tokens"),
    "add-tools-bench": (
        "eval.bench_add_tools",
        "hold tools out of a ToolBench build, add them, compare to the full one",
    ),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval", description="ToolGen Workbench evaluation")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in SUBCOMMANDS.items():
        importlib.import_module(module).add_arguments(commands.add_parser(name, help=help_text))
    args = parser.parse_args(argv)
    try:
        return importlib.import_module(SUBCOMMANDS[args.command][0]).run(args)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
