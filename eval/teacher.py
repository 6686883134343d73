"""`python -m eval teacher --corpus bfcl|toolbench --systems bm25[,embedding-ft] --out FILE`: soft targets for
distillation (`python -m core build --teacher FILE`, core/soft_targets.py).

For every query the build's retrieval stage trains on (training queries and the preset's synthetic ones,
`core.examples.retrieval_queries`), each teacher system ranks the whole catalog; its top `--k` tools get the weights
exp(-(s_1 - s) / (T · (s_1 - s_k))), s_1 the best score and s_k the k-th (scale-free, so BM25 and cosine scores
mix): the best tool weighs 1, the k-th exp(-1/T). The weights are normalised, and several systems are averaged.
A query no teacher scores at all (BM25 with no known word) gets no line: only the gold cross-entropy trains it.
"""

from __future__ import annotations

import argparse
import json
import math
import time

from core.build import CORPORA, PRESETS, load_corpus
from core.examples import retrieval_queries
from core.soft_targets import write_soft_targets

from .retrievers import BASELINES, baseline_retriever

DEFAULT_K, DEFAULT_TEMPERATURE = 32, 0.25


def teacher_distribution(ranked: list[tuple[str, float]], temperature: float) -> list[tuple[str, float]]:
    """Normalised weights over a teacher's ranking (best first; see the module docstring); [] when every score is
    the same (nothing to learn from)."""
    if len(ranked) < 2 or ranked[0][1] <= ranked[-1][1]:
        return []
    best, spread = ranked[0][1], ranked[0][1] - ranked[-1][1]
    weights = [(tool_id, math.exp(-(best - score) / (temperature * spread))) for tool_id, score in ranked]
    total = sum(w for _, w in weights)
    return [(tool_id, w / total) for tool_id, w in weights]


def fuse(distributions: list[list[tuple[str, float]]]) -> list[tuple[str, float]]:
    """The average of several distributions (a tool missing from one counts 0 there), best first."""
    kept = [d for d in distributions if d]
    mixed: dict[str, float] = {}
    for distribution in kept:
        for tool_id, p in distribution:
            mixed[tool_id] = mixed.get(tool_id, 0.0) + p / len(kept)
    return sorted(mixed.items(), key=lambda item: -item[1])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", choices=CORPORA, default="bfcl")
    parser.add_argument("--data-dir", default=None, help="as for `python -m core build`")
    parser.add_argument(
        "--preset", choices=sorted(PRESETS), default=None, help="the build preset (its synthetic queries)"
    )
    parser.add_argument(
        "--systems", default="bm25", help=f"teacher systems, comma-separated, from {', '.join(BASELINES)}"
    )
    parser.add_argument("--k", type=int, default=DEFAULT_K, help="tools per query in the distribution")
    parser.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE, help="the k-th tool weighs exp(-1/T)")
    parser.add_argument("--out", required=True, help="the soft-targets file to write (JSON Lines)")


def run(args: argparse.Namespace) -> int:
    """Write the soft-targets file; prints a JSON summary."""
    started = time.time()
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if not systems or any(s not in BASELINES for s in systems):
        raise ValueError(f"--systems: choose from {', '.join(BASELINES)}, got {args.systems!r}")
    if args.k < 2 or not (args.temperature > 0 and math.isfinite(args.temperature)):
        raise ValueError("--k must be at least 2 and --temperature a positive number")
    preset = PRESETS[args.preset or ("default-toolbench" if args.corpus == "toolbench" else "default")]
    corpus = load_corpus(args.corpus, args.data_dir, preset.max_tools)
    queries = retrieval_queries(
        corpus.catalog, corpus.train, preset.synthetic_per_tool, preset.synthetic_for, preset.pairs_per_tool
    )
    texts = list(dict.fromkeys(q.text for q in queries))
    teachers = [baseline_retriever(system, corpus.catalog, corpus.name) for system in systems]
    rankings = [[teacher.retrieve(text, args.k) for text in texts] for teacher in teachers]
    targets = {}
    for i, text in enumerate(texts):
        distribution = fuse([teacher_distribution(r[i], args.temperature) for r in rankings])
        if distribution:
            targets[text] = distribution
    write_soft_targets(args.out, targets)
    summary = {"corpus": corpus.name, "systems": systems, "queries": len(texts), "with_targets": len(targets)}
    summary |= {
        "k": args.k,
        "temperature": args.temperature,
        "out": args.out,
        "seconds": round(time.time() - started, 1),
    }
    print(json.dumps(summary))
    return 0
