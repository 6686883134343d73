"""BFCL v4 loaders: catalog ids and schemas, entries, ground-truth call parsing (core/bfcl.py)."""

import json
from collections import defaultdict

import pytest

from core.bfcl import (
    BACKEND_DOCS,
    CATEGORIES,
    MULTI_TURN_CATEGORIES,
    entries_to_queries,
    function_name,
    load_bfcl_catalog,
    load_bfcl_entries,
    parse_call,
)
from core.tools import CatalogError


@pytest.fixture(scope="module")
def catalog():
    return load_bfcl_catalog()


# ---------------------------------------------------------------- a small hand-made data folder


def _doc(name, params, description="d"):
    return {
        "name": name,
        "description": description,
        "parameters": {"type": "dict", "properties": params, "required": list(params)[:1]},
    }


def _write_data(root, questions=(), answers=(), gorilla_docs=()):
    """A bfcl_eval-style data folder: every file present, simple_python and the file-system doc filled in."""
    (root / "possible_answer").mkdir(parents=True)
    (root / "multi_turn_func_doc").mkdir()
    for category in CATEGORIES:
        stem = "memory" if category.startswith("memory_") else category
        (root / f"BFCL_v4_{stem}.json").write_text("")
        (root / "possible_answer" / f"BFCL_v4_{stem}.json").write_text("")
    for stem in BACKEND_DOCS.values():
        (root / "multi_turn_func_doc" / f"{stem}.json").write_text("")
    lines = lambda rows: "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows)  # noqa: E731
    (root / "BFCL_v4_simple_python.json").write_text(lines(questions))
    (root / "possible_answer" / "BFCL_v4_simple_python.json").write_text(lines(answers))
    (root / "multi_turn_func_doc" / "gorilla_file_system.json").write_text(lines(gorilla_docs))
    return root


def _question(entry_id, *docs):
    return {"id": entry_id, "question": [[{"role": "user", "content": f"question {entry_id}"}]], "function": list(docs)}


def test_variants_get_hashes_and_identical_docs_merge(tmp_path):
    f_a = _doc("f", {"x": {"type": "integer"}})
    f_b = _doc("f", {"x": {"type": "integer"}}, description="another f")
    g = _doc("ns.g", {"y": {"type": "string"}})
    root = _write_data(
        tmp_path,
        [_question("e0", f_a, g), _question("e1", dict(f_a)), _question("e2", f_b)],
        [{"id": f"e{i}", "ground_truth": [{"f": {"x": [1]}}]} for i in range(3)],
        [_doc("cd", {"folder": {"type": "string"}})],
    )
    catalog = load_bfcl_catalog(data_dir=root)
    f_ids = sorted(t.id for t in catalog if function_name(t) == "f")
    assert len(f_ids) == 2 and all(i.startswith("bfcl&&f#") and len(i) == len("bfcl&&f#") + 6 for i in f_ids)
    assert catalog.find("ns", "ns.g") is not None  # namespace = text before the last '.'
    assert catalog["GorillaFileSystem&&cd"].category == "gorilla_file_system"
    assert len(catalog) == 4  # f (2 variants), ns.g, cd
    entries = load_bfcl_entries(["simple_python"], data_dir=root)
    assert entries[0].pool[0] == entries[1].pool[0] != entries[2].pool[0]  # e0/e1 share one f tool
    assert [e.gold for e in entries] == [(e.pool[0],) for e in entries]


def test_schema_conversion(tmp_path):
    doc = _doc(
        "h",
        {
            "a": {"type": "float"},
            "b": {"type": "tuple", "items": {"type": "integer"}},
            "c": {"type": "dict", "properties": {"d": {"type": "boolean"}}, "optional": True},
            "e": {"type": "any", "description": "anything"},
            "s": {"type": "string", "enum": ["x", "y"]},
        },
    )
    root = _write_data(tmp_path, [_question("e0", doc)], [{"id": "e0", "ground_truth": [{"h": {"a": [1.0]}}]}])
    (tool,) = load_bfcl_catalog(data_dir=root)
    props = tool.parameters["properties"]
    assert tool.parameters["type"] == "object" and tool.parameters["required"] == ["a"]
    assert props["a"] == {"type": "number"}
    assert props["b"] == {"type": "array", "items": {"type": "integer"}}
    assert props["c"] == {"type": "object", "properties": {"d": {"type": "boolean"}}}
    assert props["e"] == {"description": "anything"}  # "any": no type constraint
    assert props["s"]["enum"] == ["x", "y"]


def test_malformed_input_names_file_entry_and_problem(tmp_path):
    root = _write_data(tmp_path / "a", [_question("e0", _doc("f", {})), "{not json"])
    with pytest.raises(CatalogError, match=r"BFCL_v4_simple_python\.json: entry line 2: invalid JSON"):
        load_bfcl_catalog(data_dir=root)
    root = _write_data(tmp_path / "b", [_question("e7", _doc("f", {"x": {"type": "complex"}}))])
    with pytest.raises(CatalogError, match=r"entry e7: f\.x: unknown parameter type 'complex'"):
        load_bfcl_catalog(data_dir=root)
    root = _write_data(
        tmp_path / "c",
        [_question("e0", _doc("f", {"x": {"type": "integer"}}))],
        [{"id": "e0", "ground_truth": [{"g": {"x": [1]}}]}],
    )
    with pytest.raises(CatalogError, match=r"entry e0: ground truth calls 'g'"):
        load_bfcl_entries(["simple_python"], data_dir=root)
    root = _write_data(tmp_path / "d", [_question("e0", _doc("f", {}))], [])
    with pytest.raises(CatalogError, match=r"entry e0: no ground truth"):
        load_bfcl_entries(["simple_python"], data_dir=root)
    with pytest.raises(ValueError, match="unknown BFCL category 'simple_java'"):
        load_bfcl_entries(["simple_java"], data_dir=root)


# ---------------------------------------------------------------- the real BFCL v4 data


def test_real_catalog_ids(catalog):
    assert len(catalog) > 3000
    by_name = defaultdict(list)
    for tool in catalog:
        assert tool.id == f"{tool.tool_name}&&{tool.api_name}" and tool.source == "bfcl"
        assert tool.parameters["type"] == "object"
        by_name[(tool.tool_name, function_name(tool))].append(tool)
    for tools in by_name.values():  # variants: all suffixed or none
        assert len(tools) == 1 and "#" not in tools[0].api_name or all("#" in t.api_name for t in tools)
    assert any(len(tools) > 1 for tools in by_name.values())
    for class_name in ("GorillaFileSystem", "TradingBot", "TwitterAPI", "MathAPI"):
        assert any(t.tool_name == class_name for t in catalog)
    assert by_name[("math", "math.factorial")]  # namespace = text before the last '.'
    assert by_name[("bfcl", "calculate_triangle_area")]  # no namespace


def test_category_catalogs_are_subsets_with_stable_ids(catalog):
    multi = load_bfcl_catalog(["multi_turn_base"])
    assert {t.tool_name for t in multi} == set(list(BACKEND_DOCS)[:8])
    assert set(load_bfcl_catalog(["simple_python", "live_multiple"]).ids) <= set(catalog.ids)


def test_single_turn_entries():
    entries = load_bfcl_entries(["simple_python", "parallel", "irrelevance"])
    by_category = defaultdict(list)
    for entry in entries:
        by_category[entry.category].append(entry)
    assert [len(by_category[c]) for c in ("simple_python", "parallel", "irrelevance")] == [400, 200, 240]
    first = by_category["simple_python"][0]
    assert first.ground_truth == [{"calculate_triangle_area": {"base": [10], "height": [5], "unit": ["units", ""]}}]
    assert first.gold == first.pool and first.gold[0].startswith("bfcl&&calculate_triangle_area")
    assert all(set(e.gold) <= set(e.pool) and e.gold for e in by_category["parallel"])
    assert all(e.gold == () and e.ground_truth == [] and e.kind == "irrelevance" for e in by_category["irrelevance"])


def test_multi_turn_entries():
    entries = {e.id: e for e in load_bfcl_entries(MULTI_TURN_CATEGORIES)}
    assert len(entries) == 800
    base = entries["multi_turn_base_0"]
    assert base.involved_classes == ("TwitterAPI", "GorillaFileSystem")
    assert base.ground_truth[0][0] == "cd(folder='document')" and len(base.turns) == len(base.ground_truth)
    assert "GorillaFileSystem" in base.initial_config and base.held_out == {}
    assert "GorillaFileSystem&&mkdir" in base.gold and set(base.gold) <= set(base.pool)
    missing = entries["multi_turn_miss_func_0"]
    assert missing.held_out == {3: ("GorillaFileSystem&&sort",)} and missing.turns[3] == []
    assert "GorillaFileSystem&&sort" not in missing.pool and "GorillaFileSystem&&sort" in missing.gold


def test_agentic_entries():
    entries = load_bfcl_entries(["memory_kv", "web_search"])
    memory = entries[0]
    assert memory.id == "memory_kv_0-customer-0" and memory.ground_truth == ["Michael"]
    assert memory.involved_classes == ("MemoryAPI_kv",) and all(t.startswith("MemoryAPI_kv&&") for t in memory.pool)
    assert entries[-1].category == "web_search" and entries[-1].kind == "agentic"


def test_entries_to_queries():
    entries = load_bfcl_entries(["live_simple", "live_irrelevance", "multi_turn_miss_func"])
    queries = entries_to_queries(entries)
    assert len(queries) == 258 + 200  # irrelevance has no gold tools
    by_id = {q.id: q for q in queries}
    assert by_id["live_simple_0-0-0"].text.startswith("Can you retrieve the details for the user with the ID 7890")
    assert by_id["live_simple_0-0-0"].source == "bfcl:live_simple"
    assert "GorillaFileSystem&&sort" in by_id["multi_turn_miss_func_0"].pool  # held-out tools are offered later
    system_first = next(e for e in entries if e.turns[0][0]["role"] == "system" and e.gold)
    assert by_id[system_first.id].text == next(m["content"] for m in system_first.turns[0] if m["role"] == "user")


# ---------------------------------------------------------------- parse_call


def test_parse_call():
    assert parse_call("cd(folder='x')") == [("cd", {"folder": "x"})]
    assert parse_call('[f(a=1, b=-2.5), g.h(c=[1, (2, 3)], d={"k": None})]') == [
        ("f", {"a": 1, "b": -2.5}),
        ("g.h", {"c": [1, (2, 3)], "d": {"k": None}}),
    ]
    assert parse_call("[]") == []
    assert parse_call("sort('a.txt')", {"sort": ["file_name"]}) == [("sort", {"file_name": "a.txt"})]


@pytest.mark.parametrize(
    "text",
    [
        "sort('a.txt')",
        "f(x=g())",
        "__import__('os').system('ls')",
        "f(x=y)",
        "f(**{'a': 1})",
        "f(a=1, a=2)",
        "1 + 2",
        "f(",
        "f(x=[i for i in range(3)])",
    ],
)
def test_parse_call_rejects_non_literal_code(text):
    with pytest.raises(ValueError):
        parse_call(text)
