"""Tool catalog loaders: ToolBench corpus and queries, the official token list, and their error messages."""

import json

import pytest

from core.indexing import parse_tool_token, tool_token
from core.toolbench import load_toolbench_corpus, load_toolbench_queries
from core.tools import CatalogError, Tool, ToolCatalog
from core.vocab import catalog_from_tokens, load_token_list

API = {
    "category_name": "Data",
    "tool_name": "T",
    "api_name": "a",
    "api_description": "does a",
    "required_parameters": [{"name": "x", "type": "NUMBER", "description": "", "default": 3}],
    "optional_parameters": [],
    "method": "GET",
    "template_response": {"k": "str"},
}


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


def test_real_corpus_and_queries_load(shared_data):
    catalog = load_toolbench_corpus(shared_data / "toolbench" / "corpus.json")
    assert len(catalog) == 2479
    queries = load_toolbench_queries(shared_data / "toolbench" / "queries" / "G1_instruction.json", catalog)
    assert len(queries) == 163
    assert all(q.gold and set(q.gold) <= set(q.pool) for q in queries)


def test_api_entry_becomes_tool_with_json_schema(tmp_path):
    catalog = load_toolbench_corpus(write(tmp_path, "c.json", [API]))
    tool = catalog["T&&a"]
    assert tool.parameters == {
        "type": "object",
        "properties": {"x": {"type": "number", "description": "", "default": 3}},
        "required": ["x"],
    }
    assert "Api Name: a" in tool.document() and "x (number, required)" in tool.document()


@pytest.mark.parametrize(
    "content, problem",
    [
        ("[{", "invalid JSON"),
        ({"not": "a list"}, "expected a JSON list"),
        ([{"tool_name": "T"}], "missing or empty field 'api_name'"),
        ([API, API], "duplicate tool id 'T&&a'"),
        ([{**API, "required_parameters": "x"}], "'required_parameters' must be a list"),
    ],
)
def test_malformed_corpus_names_file_entry_and_problem(tmp_path, content, problem):
    path = write(tmp_path, "corpus.json", content)
    with pytest.raises(CatalogError) as error:
        load_toolbench_corpus(path)
    assert str(path) in str(error.value) and problem in str(error.value)


def test_duplicate_error_names_the_entry(tmp_path):
    with pytest.raises(CatalogError, match=r"entry 1: duplicate"):
        load_toolbench_corpus(write(tmp_path, "c.json", [API, API]))


def test_queries_with_unknown_tool_or_missing_fields_fail_clearly(tmp_path):
    catalog = load_toolbench_corpus(write(tmp_path, "c.json", [API]))
    row = {"query_id": 1, "query": "do a", "relevant APIs": [["T", "zzz"]], "api_list": [API]}
    with pytest.raises(CatalogError, match=r"q.json: entry 0: unknown tool 'T&&zzz'"):
        load_toolbench_queries(write(tmp_path, "q.json", [row]), catalog)
    with pytest.raises(CatalogError, match=r"entry 0: missing field 'query'"):
        load_toolbench_queries(write(tmp_path, "q.json", [{"query_id": 1}]), catalog)
    with pytest.raises(CatalogError, match=r"entry 1: duplicate query_id '1'"):
        good = {**row, "relevant APIs": [["T", "a"]]}
        load_toolbench_queries(write(tmp_path, "q.json", [good, good]), catalog)


def test_token_format_round_trip_keeps_names_verbatim():
    for tool_name, api_name in [
        ("TheClique", "Songkick concert"),
        ("👋 Demo Project", "Login"),
        ("Thai OCR", "Driver's  License"),
        ("BEC API\t", "x&&y"),
    ]:
        assert parse_tool_token(tool_token(tool_name, api_name)) == (tool_name, api_name)
    with pytest.raises(ValueError):
        parse_tool_token("<<Finish>>")


def test_official_token_list_loads(shared_data):
    catalog = load_token_list(shared_data / "toolgen" / "virtual_tokens.txt")
    assert len(catalog) == 46984  # every line but <<Finish>>
    assert "👋 Demo Project&&Login" in catalog


def test_malformed_token_line_is_reported_with_its_line():
    with pytest.raises(CatalogError, match=r"entry line 2: not a tool token"):
        catalog_from_tokens(["<<A&&b>>", "garbage"], source="tokens.txt")


def test_catalog_subset_merge_and_json_round_trip(tmp_path, toy_catalog):
    sub = toy_catalog.subset(["Music&&lyrics", "Weather&&forecast"])
    assert sub.ids == ["Weather&&forecast", "Music&&lyrics"]  # catalog order
    with pytest.raises(CatalogError):
        toy_catalog.merge(sub)
    path = tmp_path / "tools.json"
    toy_catalog.to_json(path)
    again = ToolCatalog.from_json(path)
    assert [t.to_dict() for t in again] == [t.to_dict() for t in toy_catalog]
    assert toy_catalog.find("Music", "lyrics") == toy_catalog["Music&&lyrics"]
    with pytest.raises(KeyError, match="unknown tool id"):
        toy_catalog["nope"]
    assert isinstance(hash(toy_catalog["Music&&lyrics"]), int) and isinstance(sub["Music&&lyrics"], Tool)
