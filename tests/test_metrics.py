"""Ranking metrics: hand-checked values, and agreement with scikit-learn's own implementations."""

import math
import random

import pytest
from sklearn.metrics import label_ranking_average_precision_score, ndcg_score, top_k_accuracy_score

from eval.metrics import hit, mrr, ndcg, ndcg_paper, ranking_metrics, recall

LOG2_3 = math.log2(3)


def test_ndcg_penalises_missed_gold_but_paper_variant_does_not():
    ranked = ["g1", "x", "y", "z", "w"]
    gold = {"g1", "g2"}  # g2 never retrieved
    assert ndcg(ranked, gold, 1) == 1.0
    assert ndcg(ranked, gold, 3) == pytest.approx(1 / (1 + 1 / LOG2_3))
    assert ndcg_paper(ranked, gold, 3) == 1.0  # ideal ranking holds only the retrieved g1


def test_paper_ndcg_ideal_uses_gold_anywhere_in_the_retrieved_list():
    ranked = ["x", "g1", "y", "z", "g2"]
    gold = ["g1", "g2", "g3"]
    # k=1: one retrieved gold could have been first -> 0; k=3: DCG 1/log2(3) over ideal 1 + 1/log2(3)
    assert ndcg_paper(ranked, gold, 1) == 0.0
    assert ndcg_paper(ranked, gold, 3) == pytest.approx((1 / LOG2_3) / (1 + 1 / LOG2_3))
    assert ndcg_paper(["x", "y"], gold, 5) == 0.0
    # standard NDCG@3 divides by three gold items ranked first
    assert ndcg(ranked, gold, 3) == pytest.approx((1 / LOG2_3) / (1 + 1 / LOG2_3 + 0.5))


TOOLS = [f"t{i}" for i in range(8)]


def random_cases(n=100, seed=0):
    """(ranked, gold) pairs: a ranking of 5-8 distinct tools, 1-3 gold tools (some never retrieved)."""
    rng = random.Random(seed)
    return [(rng.sample(TOOLS, rng.randint(5, 8)), set(rng.sample(TOOLS, rng.randint(1, 3)))) for _ in range(n)]


def rank_scores(items):
    """Descending scores that put `items` in their listed order (no ties)."""
    return [float(len(items) - i) for i in range(len(items))]


def test_paper_ndcg_is_sklearn_ndcg_score_over_the_retrieved_list():
    """The paper scores with sklearn's ndcg_score over the retrieved list, marking the retrieved gold tools."""
    for ranked, gold in random_cases() + [(["a", "b"], {"z"})]:
        relevance = [[int(t in gold) for t in ranked]]
        for k in (1, 3, 5):
            assert ndcg_paper(ranked, gold, k) == pytest.approx(ndcg_score(relevance, [rank_scores(ranked)], k=k))


def test_ndcg_is_sklearn_ndcg_score_with_missed_gold_ranked_last():
    for ranked, gold in random_cases():
        items = ranked + sorted(gold - set(ranked))  # missed gold: below every retrieved tool (beyond any k <= 5)
        relevance = [[int(t in gold) for t in items]]
        for k in (1, 3, 5):
            assert ndcg(ranked, gold, k) == pytest.approx(ndcg_score(relevance, [rank_scores(items)], k=k))


def test_hit_and_mrr_are_sklearn_top_k_accuracy_and_lrap_for_one_gold_tool():
    rng = random.Random(1)
    rankings = [rng.sample(TOOLS, len(TOOLS)) for _ in range(200)]
    golds = [rng.choice(TOOLS) for _ in rankings]
    scores = [[float(len(TOOLS) - ranked.index(t)) for t in TOOLS] for ranked in rankings]  # per class, in TOOLS order
    labels = [TOOLS.index(g) for g in golds]
    for k in (1, 3, 5):
        ours = sum(hit(ranked, [g], k) for ranked, g in zip(rankings, golds)) / len(golds)
        assert ours == pytest.approx(top_k_accuracy_score(labels, scores, k=k, labels=range(len(TOOLS))))
    indicator = [[int(t == g) for t in TOOLS] for g in golds]
    ours = sum(mrr(ranked, [g]) for ranked, g in zip(rankings, golds)) / len(golds)
    assert ours == pytest.approx(label_ranking_average_precision_score(indicator, scores))


def test_recall_hit_mrr():
    ranked = ["x", "g1", "y", "g2"]
    gold = ["g1", "g2", "g3", "g4"]
    assert recall(ranked, gold, 1) == 0.0
    assert recall(ranked, gold, 3) == 0.25
    assert recall(ranked, gold, 5) == 0.5
    assert hit(ranked, gold, 1) == 0.0 and hit(ranked, gold, 2) == 1.0
    assert mrr(ranked, gold) == 0.5
    assert mrr(["x"], gold) == 0.0


def test_duplicates_count_once():
    assert ndcg(["g", "g", "h"], {"g", "h"}, 2) == pytest.approx(1.0)
    assert recall(["g", "g"], {"g", "h"}, 2) == 0.5


def test_ranking_metrics_keys_and_errors():
    scores = ranking_metrics(["a", "b"], ["b"])
    assert set(scores) == {f"{m}@{k}" for m in ("ndcg", "ndcg_paper", "recall", "hit") for k in (1, 3, 5)} | {"mrr"}
    assert scores["hit@1"] == 0.0 and scores["hit@3"] == 1.0 and scores["mrr"] == 0.5
    assert scores["ndcg@3"] == pytest.approx(1 / LOG2_3)
    with pytest.raises(ValueError, match="gold set is empty"):
        ranking_metrics(["a"], [])
    with pytest.raises(ValueError, match="k must be"):
        ndcg(["a"], ["a"], 0)
