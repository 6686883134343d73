import math

import numpy as np
import pytest
import torch

from eval.catalog_softmax import finetune_against_catalog, grouped, multi_gold_loss


def test_grouped_merges_pairs_of_one_query_and_marks_shared_documents():
    documents = ["doc a", "doc b", "doc a", "doc c"]  # tools 0 and 2 share a document
    pairs = [("q1", "doc b"), ("q2", "doc a"), ("q1", "doc c"), ("q1", "doc b")]
    assert grouped(pairs, documents) == [("q1", [1, 3]), ("q2", [0, 2])]
    with pytest.raises(ValueError, match="training pair 1: its document is not among"):
        grouped([("q", "doc a"), ("q", "doc z")], documents)
    with pytest.raises(ValueError, match="training pair 0: expected"):
        grouped([(" ", "doc a")], documents)


def test_multi_gold_loss_leaves_the_other_golds_out_of_each_softmax():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    gold = torch.tensor([[True, True, False, False]])
    rest = math.exp(0.0) + math.exp(-1.0)
    expected = (-math.log(math.exp(2) / (math.exp(2) + rest)) - math.log(math.exp(1) / (math.exp(1) + rest))) / 2
    assert multi_gold_loss(logits, gold).item() == pytest.approx(expected, rel=1e-6)
    one = torch.tensor([[False, False, True, False]])  # one gold: plain cross-entropy
    assert multi_gold_loss(logits, one).item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits, torch.tensor([2])).item(), rel=1e-6
    )


@pytest.mark.slow
def test_finetune_against_catalog_learns_the_training_pairs(tmp_path):
    from core.tools import Tool, ToolCatalog
    from eval.retrievers import EmbeddingRetriever
    from tests.test_retrievers import QUERIES, TOOLS

    catalog = ToolCatalog(Tool(f"{t}&&{a}", "Test", t, a, d, source="test") for t, a, d in TOOLS)
    documents = [tool.document() for tool in catalog]
    pairs = [(query, catalog[gold].document()) for query, gold in QUERIES.items()]
    before = EmbeddingRetriever(catalog, cache_dir=tmp_path / "cache")
    report = finetune_against_catalog(pairs, documents, tmp_path / "ft", epochs=3, batch_size=2, learning_rate=1e-4)
    assert report["queries"] == len(QUERIES) and report["documents"] == len(catalog)
    assert report["steps"] == 3 * math.ceil(len(QUERIES) / 2)
    tuned = EmbeddingRetriever(catalog, model_path=tmp_path / "ft", cache_dir=tmp_path / "cache")
    assert not np.allclose(tuned.embeddings, before.embeddings, atol=1e-4)
    for query, gold in QUERIES.items():
        assert tuned.retrieve(query, k=1)[0][0] == gold
