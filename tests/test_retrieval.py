"""ToolGen retrieval on a tiny random model: ranking contract, pools, bad queries, and the CLI."""

import json
import math

import pytest

from core.__main__ import main
from core.retrieval import MAX_QUERY_TOKENS, QueryError, ToolGenRetriever
from tests.helpers import tiny_toolgen


@pytest.fixture
def retriever(smollm2_tokenizer, toy_catalog):
    return ToolGenRetriever(tiny_toolgen(smollm2_tokenizer, toy_catalog))


def test_ranked_tools_are_distinct_known_and_sorted(retriever, toy_catalog):
    hits = retriever.retrieve("what is the weather in Paris", k=5)
    assert len(hits) == 5 and len({t for t, _ in hits}) == 5
    assert all(t in toy_catalog for t, _ in hits)
    scores = [s for _, s in hits]
    assert scores == sorted(scores, reverse=True) and all(s <= 0 for s in scores)


def test_k_larger_than_beams_is_exact_for_atomic_codes(retriever):
    assert len(retriever.retrieve("book a flight", k=12)) == 12


def test_pool_restriction_is_respected(retriever):
    pool = ["Music&&lyrics", "Travel&&visa rules", "Finance&&crypto price"]
    hits = retriever.retrieve("anything", k=5, pool=pool)
    assert sorted(t for t, _ in hits) == sorted(pool)
    # the log-prob of a tool does not depend on the pool: the pool only removes competitors
    full = dict(retriever.retrieve("anything", k=20))
    assert all(math.isclose(s, full[t], rel_tol=1e-5) for t, s in hits)


def test_bad_queries_and_pools_raise_clear_errors(retriever):
    with pytest.raises(QueryError, match="empty"):
        retriever.retrieve("   ")
    with pytest.raises(QueryError, match="unknown tool"):
        retriever.retrieve("x", pool=["Nope&&nothing"])
    with pytest.raises(QueryError, match="pool is empty"):
        retriever.retrieve("x", pool=[])


def test_huge_query_is_truncated_not_fatal(retriever):
    prompt = retriever.prompt_ids("weather " * 5000)
    assert len(prompt) < MAX_QUERY_TOKENS + 64
    assert len(retriever.retrieve("weather " * 5000, k=3)) == 3


def test_cli_retrieve_json_contract(tmp_path, retriever, capsys):
    retriever.toolgen.save(tmp_path / "model")
    assert main(["retrieve", "current weather please", "--model", str(tmp_path / "model"), "--k", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"query", "candidates", "latency_ms"} and out["query"] == "current weather please"
    assert len(out["candidates"]) == 3
    for c in out["candidates"]:
        assert set(c) == {"token", "tool_id", "tool_name", "api_name", "score"}
        tool_id = f"{c['tool_name']}&&{c['api_name']}"
        assert c["token"] == f"<<{tool_id}>>" and c["tool_id"] == tool_id


def test_cli_reports_missing_model_without_traceback(tmp_path, capsys):
    assert main(["retrieve", "hi", "--model", str(tmp_path / "none")]) == 2
    assert "no ToolGen checkpoint" in capsys.readouterr().err


def test_lexical_prior_adds_scaled_bm25_to_each_tools_log_prob(smollm2_tokenizer, toy_catalog):
    from core.lexical import LexicalIndex

    toolgen = tiny_toolgen(smollm2_tokenizer, toy_catalog)
    plain, hybrid = ToolGenRetriever(toolgen), ToolGenRetriever(toolgen, lexical_weight=3.0)
    assert (plain.name, hybrid.name) == ("toolgen", "toolgen+bm25")
    query = "when does the train leave, and what are the train times"
    prior = dict(zip(toy_catalog.ids, LexicalIndex(toy_catalog).prior(query)))
    assert prior["Travel&&train times"] == 1.0 and prior["Music&&lyrics"] == 0.0
    log_probs = dict(plain.retrieve(query, k=len(toy_catalog)))
    fused = hybrid.retrieve(query, k=len(toy_catalog))
    assert fused[0][0] == "Travel&&train times"  # a weight of 3 nats outweighs a random tiny model
    for tool_id, score in fused:
        assert math.isclose(score, log_probs[tool_id] + 3.0 * prior[tool_id], rel_tol=1e-5, abs_tol=1e-5)
    # the batched path, the inspector and pools see the same scores
    batched = hybrid.retrieve_batch([query, "lyrics"], k=3)[0]
    assert [t for t, _ in batched] == [t for t, _ in fused[:3]]
    assert [s for _, s in batched] == pytest.approx([s for _, s in fused[:3]], rel=1e-5)
    assert [c.tool_id for c in hybrid.inspect(query, k=3).candidates] == [t for t, _ in fused[:3]]
    pool = ["Music&&lyrics", "Travel&&train times"]
    assert [t for t, _ in hybrid.retrieve(query, k=2, pool=pool)] == ["Travel&&train times", "Music&&lyrics"]


def test_lexical_prior_without_a_matching_word_changes_nothing(smollm2_tokenizer, toy_catalog):
    toolgen = tiny_toolgen(smollm2_tokenizer, toy_catalog)
    query = "zzzz qqqq"
    hybrid, plain = (
        ToolGenRetriever(toolgen, lexical_weight=5.0).retrieve(query, k=4),
        ToolGenRetriever(toolgen).retrieve(query, k=4),
    )
    assert [t for t, _ in hybrid] == [t for t, _ in plain]
    assert [s for _, s in hybrid] == pytest.approx([s for _, s in plain])
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="lexical_weight"):
            ToolGenRetriever(toolgen, lexical_weight=bad)
