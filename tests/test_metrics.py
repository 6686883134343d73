import math

import pytest

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


def test_paper_ndcg_matches_sklearn_formulation():
    """The paper scores with sklearn.metrics.ndcg_score over a relevance vector that marks only retrieved
    gold tools; recompute that formulation by hand (rank-based scores, no ties) on a few cases."""
    def reference(ranked, gold, k):
        relevance = [int(t in gold) for t in ranked]
        ideal = sorted(relevance, reverse=True)
        dcg = sum(r / math.log2(i + 2) for i, r in enumerate(relevance[:k]))
        idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal[:k]))
        return dcg / idcg if idcg else 0.0

    cases = [(["a", "b", "c", "d", "e"], {"b", "e", "q"}), (["a", "b", "c", "d", "e"], {"a"}),
             (["a", "b", "c", "d", "e"], {"c", "d"}), (["a", "b"], {"z"})]
    for ranked, gold in cases:
        for k in (1, 3, 5):
            assert ndcg_paper(ranked, gold, k) == pytest.approx(reference(ranked, gold, k))


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
