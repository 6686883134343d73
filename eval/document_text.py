"""Which text of a tool the embedding baseline should index, chosen on the training queries (as BM25's was).

`python -m eval document-text --corpus toolbench|bfcl [--data-dir DIR] [--json]`

Embeds the training-split queries once and each tool once per candidate text (`VARIANTS`) with MiniLM, ranks the
whole catalog by cosine similarity, and prints NDCG@1/@5 per text. The held-out queries are never used, so the
choice (`eval.retrievers.embedding_document`) leaves the test tables honest.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from core.lexical import bm25_document
from core.settings import TOOLBENCH_DATA_DIR
from core.tools import Tool

from .metrics import ranking_metrics
from .retrieval_eval import sets_by_split
from .retrievers import EmbeddingRetriever

VARIANTS = {
    "documentation": Tool.document,
    "documentation without parameters": lambda tool: tool.document().split("\nParameter:")[0],
    "bm25 text": bm25_document,
    "names and description": lambda tool: f"{tool.tool_name}: {tool.api_name}. {tool.description}",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", choices=("toolbench", "bfcl"), required=True)
    parser.add_argument("--data-dir", default=str(TOOLBENCH_DATA_DIR), help="ToolBench data folder")
    parser.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    catalog, sets = sets_by_split(args.corpus, Path(args.data_dir), "multi-domain", "train")
    queries = [q for evalset in sets for q in evalset.queries]
    minilm = EmbeddingRetriever(catalog, cache_dir=None)
    query_embeddings = minilm.embed_queries([q.text for q in queries])
    report = {}
    for name, text in VARIANTS.items():
        documents = minilm.embed_documents([text(tool) for tool in catalog])
        metrics = [
            ranking_metrics([catalog.ids[i] for i in np.argsort(-similarity)[:5]], query.gold)
            for query, similarity in zip(queries, query_embeddings @ documents.T)
        ]
        report[name] = {m: round(100 * float(np.mean([x[m] for x in metrics])), 1) for m in ("ndcg@1", "ndcg@5")}
    result = {"corpus": args.corpus, "split": "train", "queries": len(queries), "texts": report}
    print(json.dumps(result, indent=1) if args.json else "\n".join(f"{k}: {v}" for k, v in report.items()))
    return 0
