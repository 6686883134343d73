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
