"""Ranking metrics over one ranked list of tool ids and the query's gold set (binary relevance); the build
scores retrieval after each stage with `ndcg`, and eval/metrics.py reports them all.

Two NDCG definitions are kept side by side because they differ on every query that misses a gold tool:

- `ndcg` is the textbook NDCG@k: the ideal ranking puts min(k, |gold|) gold tools first, so a gold tool
  that was never retrieved lowers the score.
- `ndcg_paper` reproduces the ToolGen paper's evaluation code (sklearn `ndcg_score` over a relevance vector
  in which only *retrieved* gold tools are marked relevant): the ideal ranking holds just the gold tools
  found somewhere in the retrieved list (the paper always retrieves 5), so missing gold is not penalised,
  and a list without any gold scores 0.

All functions count a tool id once, at its first position, if the ranked list repeats it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def _gold_set(gold: Iterable[str]) -> set[str]:
    gold_set = set(gold)
    if not gold_set:
        raise ValueError("gold set is empty: ranking metrics are undefined for a query without gold tools")
    return gold_set


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def _dedup(ranked: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(ranked))


def _dcg(relevances: Iterable[int]) -> float:
    return sum(rel / math.log2(rank + 2) for rank, rel in enumerate(relevances))


def _ideal_dcg(n_relevant: int, k: int) -> float:
    return _dcg([1] * min(n_relevant, k))


def ndcg(ranked: Sequence[str], gold: Iterable[str], k: int) -> float:
    """Standard NDCG@k: DCG of the top k over the DCG of min(k, |gold|) gold tools ranked first."""
    _check_k(k)
    gold_set = _gold_set(gold)
    top = _dedup(ranked)[:k]
    return _dcg(int(t in gold_set) for t in top) / _ideal_dcg(len(gold_set), k)


def ndcg_paper(ranked: Sequence[str], gold: Iterable[str], k: int) -> float:
    """The ToolGen paper's NDCG@k: the ideal ranking holds only the gold tools present in `ranked`.

    Pass the full retrieved list (the paper uses 5 results for every k); with no gold retrieved it is 0.
    """
    _check_k(k)
    gold_set = _gold_set(gold)
    retrieved = _dedup(ranked)
    n_retrieved_gold = sum(t in gold_set for t in retrieved)
    if n_retrieved_gold == 0:
        return 0.0
    return _dcg(int(t in gold_set) for t in retrieved[:k]) / _ideal_dcg(n_retrieved_gold, k)


def recall(ranked: Sequence[str], gold: Iterable[str], k: int) -> float:
    """Recall@k: the share of gold tools found in the top k."""
    _check_k(k)
    gold_set = _gold_set(gold)
    return len(gold_set.intersection(_dedup(ranked)[:k])) / len(gold_set)


def hit(ranked: Sequence[str], gold: Iterable[str], k: int) -> float:
    """Hit@k: 1.0 if any gold tool is in the top k, else 0.0."""
    _check_k(k)
    gold_set = _gold_set(gold)
    return float(any(t in gold_set for t in _dedup(ranked)[:k]))


def mrr(ranked: Sequence[str], gold: Iterable[str]) -> float:
    """Reciprocal rank of the first gold tool in the whole list (0.0 if none is retrieved)."""
    gold_set = _gold_set(gold)
    for rank, tool_id in enumerate(_dedup(ranked), start=1):
        if tool_id in gold_set:
            return 1.0 / rank
    return 0.0
