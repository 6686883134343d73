"""The simulated ToolBench environment: deterministic, marked simulated, template-shaped, cache replay, errors."""

import json

import pytest

from core.executors.toolbench import SIMULATED_KEY, ResponseCache, ToolBenchSimulator, canonical_arguments
from core.toolbench import load_toolbench_corpus
from core.tools import Tool

TEMPLATE = {
    "symbol": "str",
    "price": "float",
    "volume": "int",
    "open": "bool",
    "exchange": "NoneType",
    "tags": ["list of str with length 8"],
    "news": [{"title": "str", "url": "str", "published_date": "str", "_list_length": 5}],
    "related": "empty list",
    "currency": "USD",
}


def make_tool(response=TEMPLATE, required=("symbol",)) -> Tool:
    return Tool(
        id="Stocks&&quote",
        category="Finance",
        tool_name="Stocks",
        api_name="quote",
        description="A stock quote.",
        source="toolbench",
        response=response,
        parameters={
            "type": "object",
            "required": list(required),
            "properties": {"symbol": {"type": "string"}, "days": {"type": "integer"}},
        },
    )


def test_same_call_same_reply_and_different_arguments_differ():
    tool, simulator = make_tool(), ToolBenchSimulator()
    first = simulator.call(tool, {"symbol": "AAPL", "days": 3})
    again = ToolBenchSimulator().call(tool, {"days": 3, "symbol": "AAPL"})  # key order does not matter
    other = simulator.call(tool, {"symbol": "MSFT", "days": 3})
    assert first == again
    assert first.content != other.content


def test_synthesised_reply_is_marked_simulated():
    observation = ToolBenchSimulator().call(make_tool(), {"symbol": "AAPL"})
    assert observation.ok and observation.simulated and not observation.executed
    assert json.loads(observation.content)[SIMULATED_KEY] is True


def test_reply_follows_the_template_shape_and_echoes_arguments():
    body = json.loads(ToolBenchSimulator(max_list_items=3).call(make_tool(), {"symbol": "AAPL"}).content)
    assert body["symbol"] == "AAPL"  # a response key naming a parameter echoes its value
    assert isinstance(body["price"], float) and isinstance(body["volume"], int)
    assert isinstance(body["open"], bool) and body["exchange"] is None and body["related"] == []
    assert len(body["tags"]) == 3 and all(isinstance(t, str) for t in body["tags"])
    assert len(body["news"]) == 3 and set(body["news"][0]) == {"title", "url", "published_date"}
    assert body["news"][0]["url"].startswith("https://")
    assert body["currency"] == "USD"  # literal example values are kept


@pytest.mark.parametrize("response", [None, "", '{"cut": "st', "plain text"])
def test_apis_without_a_usable_template_get_a_generic_simulated_reply(response):
    observation = ToolBenchSimulator().call(make_tool(response=response), {"symbol": "AAPL"})
    body = json.loads(observation.content)
    assert observation.ok and observation.simulated and body[SIMULATED_KEY] is True and "message" in body


def test_template_stored_as_json_text_is_used():
    body = json.loads(ToolBenchSimulator().call(make_tool(response='{"rate": "float"}'), {"symbol": "X"}).content)
    assert set(body) == {SIMULATED_KEY, "rate"} and isinstance(body["rate"], float)


def test_missing_required_parameter_is_an_error_observation():
    observation = ToolBenchSimulator().call(make_tool(), {"days": 2})
    assert not observation.ok and "symbol" in observation.error and observation.simulated
    assert not ToolBenchSimulator().call(make_tool(), ["AAPL"]).ok


def test_cache_hit_replays_the_real_response(tmp_path):
    cache = ResponseCache()
    cache.record("Stocks&&quote", {"symbol": "AAPL", "days": 1}, '{"price": 189.5}')
    cache.save(tmp_path / "cache.json")
    simulator = ToolBenchSimulator(ResponseCache.load(tmp_path / "cache.json"))
    hit = simulator.call(make_tool(), {"days": 1, "symbol": "AAPL"})
    assert hit.content == '{"price": 189.5}' and not hit.simulated and hit.ok
    assert simulator.call(make_tool(), {"days": 2, "symbol": "AAPL"}).simulated  # no exact match: synthesised


def test_malformed_cache_file_names_file_and_record(tmp_path):
    path = tmp_path / "cache.json"
    path.write_text('[{"tool_id": "a&&b", "arguments": {}, "response": "ok"}, {"tool_id": "a&&b"}]')
    with pytest.raises(ValueError, match=r"cache\.json: record 1"):
        ResponseCache.load(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="invalid JSON"):
        ResponseCache.load(path)


def test_canonical_arguments_ignore_key_order():
    key = canonical_arguments({"b": 1, "a": [1, 2]})
    assert key == canonical_arguments({"a": [1, 2], "b": 1}) == '{"a":[1,2],"b":1}'


def test_every_corpus_api_gets_a_json_reply(shared_data):
    catalog = load_toolbench_corpus(shared_data / "toolbench" / "corpus.json")
    simulator = ToolBenchSimulator()
    for tool in catalog:
        observation = simulator.call(tool, {name: "x" for name in tool.parameters["required"]})
        assert observation.ok and json.loads(observation.content)[SIMULATED_KEY] is True, tool.id
