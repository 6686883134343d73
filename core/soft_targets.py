"""Soft targets for distillation: a teacher's distribution over tools for each retrieval-stage query.

A soft-targets file is JSON Lines, one object per query: `{"query": TEXT, "tools": [[TOOL_ID, P], ...]}` with the
probabilities summing to 1 (written by `python -m eval teacher`, e.g. from BM25 or a fine-tuned bi-encoder). The
retrieval stage of `python -m core build --teacher FILE` adds, for each training query found in the file, the
cross-entropy between this distribution and the model's softmax over the tool tokens, weighted by `--distill`
(`core.train.StageConfig.distill`), to the usual gold cross-entropy: the teacher's way of matching wording to
documentation then reaches every tool row, also the rows of tools no training query names.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from .tools import CatalogError

SoftTargets = Mapping[str, Sequence[tuple[str, float]]]


def write_soft_targets(path: Path | str, targets: SoftTargets) -> Path:
    """Write `targets` (query text -> [(tool id, probability)]) as a soft-targets file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for query, tools in targets.items():
            row = {"query": query, "tools": [[tool_id, round(p, 6)] for tool_id, p in tools]}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def read_soft_targets(path: Path | str, known: Mapping | set | None = None) -> dict[str, list[tuple[str, float]]]:
    """A soft-targets file as {query text: [(tool id, probability)]}, each distribution renormalised to sum to 1.

    CatalogError naming the line for malformed JSON, a negative or non-finite probability, an empty distribution,
    a repeated query, or (with `known`, the catalog's ids) a tool outside the catalog."""
    targets: dict[str, list[tuple[str, float]]] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"line {number}"
            try:
                row = json.loads(line)
                query, tools = row["query"], [(str(t), float(p)) for t, p in row["tools"]]
            except (ValueError, KeyError, TypeError) as error:
                problem = f"expected {{'query': text, 'tools': [[id, p], ...]}}: {error}"
                raise CatalogError(str(path), where, problem) from None
            if not isinstance(query, str) or query in targets:
                raise CatalogError(str(path), where, f"query missing or repeated: {query!r}")
            if any(not math.isfinite(p) or p < 0 for _, p in tools) or sum(p for _, p in tools) <= 0:
                raise CatalogError(str(path), where, "probabilities must be finite, non-negative and not all 0")
            unknown = [t for t, _ in tools if known is not None and t not in known]
            if unknown:
                raise CatalogError(str(path), where, f"tool(s) not in the catalog: {', '.join(unknown[:5])}")
            total = sum(p for _, p in tools)
            targets[query] = [(t, p / total) for t, p in tools]
    return targets
