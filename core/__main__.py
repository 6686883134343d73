"""Command line: `python -m core retrieve | check-constraint | build | export-compact | remove-tools | add-tools`
(see README)."""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from .settings import DEFAULT_MODEL_DIR

# subcommand -> module providing `add_arguments(parser)` and `run(args) -> int`
SUBCOMMANDS = {
    "check-constraint": ("core.check_constraint", "constrained decoding check at vocabulary scale"),
    "build": ("core.build", "build a ToolGen model (three training stages)"),
    "export-compact": ("core.adapter", "write a checkpoint as its trained tensors over the hash-checked base"),
    "remove-tools": ("core.remove_tools", "take tools out of a built model's catalog and constraint (no training)"),
    "add-tools": ("core.add_tools", "add tools to a built model, training on them with a replay of the old ones"),
}


def add_retrieve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", help="the user's request")
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR), help="ToolGen checkpoint directory")
    parser.add_argument("--k", type=int, default=5, help="how many tools to return")
    parser.add_argument("--beams", type=int, default=5, help="beam size")
    parser.add_argument(
        "--precision",
        choices=("auto", "float32", "bfloat16"),
        default=None,
        help="decoder number format (default: env TOOLGEN_PRECISION, else auto: bfloat16 where the CPU "
        "has native bf16, else float32)",
    )
    parser.add_argument(
        "--lexical-weight",
        type=float,
        default=0.0,
        help="add this weight times the tools' BM25 prior to their log-probs (0: the model alone; the README's "
        "toolgen+bm25 system)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")


def run_retrieve(args: argparse.Namespace) -> int:
    """Print the ranked tools for one query."""
    from .model import ToolGenModel
    from .retrieval import ToolGenRetriever
    from .runtime import apply_precision, serving_precision

    toolgen = ToolGenModel.load(args.model)
    apply_precision(toolgen.model, serving_precision(args.precision))
    retriever = ToolGenRetriever(toolgen, num_beams=args.beams, lexical_weight=args.lexical_weight)
    hits, latency_ms = retriever.ranked(args.query, k=args.k)
    candidates = [
        {
            "token": h.code,
            "tool_id": h.tool_id,
            "tool_name": toolgen.catalog[h.tool_id].tool_name,
            "api_name": toolgen.catalog[h.tool_id].api_name,
            "score": h.score,
        }
        for h in hits
    ]
    if args.json:
        print(json.dumps({"query": args.query, "candidates": candidates, "latency_ms": latency_ms}, ensure_ascii=False))
    else:
        for rank, c in enumerate(candidates, start=1):
            print(f"{rank}. {c['token']}  {'score' if args.lexical_weight else 'log-prob'} {c['score']:.3f}")
        print(f"({latency_ms:.0f} ms)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core", description="ToolGen Workbench core commands")
    commands = parser.add_subparsers(dest="command", required=True)
    add_retrieve_arguments(commands.add_parser("retrieve", help="rank tools for a query"))
    for name, (module, help_text) in SUBCOMMANDS.items():
        importlib.import_module(module).add_arguments(commands.add_parser(name, help=help_text))
    args = parser.parse_args(argv)
    if args.command == "retrieve":
        runner = run_retrieve
    else:
        runner = importlib.import_module(SUBCOMMANDS[args.command][0]).run
    try:
        return runner(args)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
