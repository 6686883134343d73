"""All ranking metrics of one query at several cutoffs (the per-query metrics themselves live in core/metrics.py,
where the build's stage scoring uses them too)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from core.metrics import hit, mrr, ndcg, ndcg_paper, recall

DEFAULT_KS = (1, 3, 5)


def ranking_metrics(ranked: Sequence[str], gold: Iterable[str], ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """All metrics for one query: `ndcg@k`, `ndcg_paper@k`, `recall@k`, `hit@k` for each k, and `mrr`.
    An empty gold set raises ValueError."""
    gold_set = set(gold)
    scores: dict[str, float] = {}
    for name, metric in (("ndcg", ndcg), ("ndcg_paper", ndcg_paper), ("recall", recall), ("hit", hit)):
        for k in ks:
            scores[f"{name}@{k}"] = metric(ranked, gold_set, k)
    scores["mrr"] = mrr(ranked, gold_set)
    return scores
