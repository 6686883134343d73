"""BFCL checkers: AST, relevance, multi-turn state/response, agentic (eval/bfcl_checker.py)."""

import pytest

from core.bfcl import load_bfcl_catalog, load_bfcl_entries, parse_call
from core.executors.bfcl import BfclExecutor
from core.tools import Tool
from eval.bfcl_checker import (
    check_agentic,
    check_ast,
    check_entry,
    check_multi_turn,
    check_relevance,
    standardize_string,
)


def _tool(api_name, properties, required):
    return Tool(
        id=f"bfcl&&{api_name}",
        category="test",
        tool_name="bfcl",
        api_name=api_name,
        description="",
        parameters={"type": "object", "properties": properties, "required": required},
    )


AREA = _tool(
    "area#abc123",
    {
        "base": {"type": "number"},
        "height": {"type": "integer"},
        "unit": {"type": "string"},
        "sides": {"type": "array", "items": {"type": "integer"}},
        "opts": {"type": "object"},
    },
    ["base", "height"],
)
WEATHER = _tool("weather", {"city": {"type": "string"}, "days": {"type": "integer"}}, ["city"])
TOOLS = [AREA, WEATHER]
AREA_TRUTH = [
    {
        "area": {
            "base": [10.0],
            "height": [5],
            "unit": ["cm", ""],
            "sides": [[3, 4], ""],
            "opts": [{"round": [True], "digits": [2, ""]}, ""],
        }
    }
]


def _ast(calls, truth=AREA_TRUTH, category="simple_python"):
    return check_ast(calls, truth, TOOLS, category)


def test_ast_single_call_rules():
    assert _ast([("area", {"base": 10.0, "height": 5})]).valid
    assert _ast([("area", {"base": 10, "height": 5})]).valid  # int accepted for float
    assert _ast([("area", {"base": 10.0, "height": 5, "unit": "CM"})]).valid  # strings standardised
    assert _ast([("area", {"base": 10.0, "height": 5, "sides": [3, 4], "opts": {"round": True}})]).valid
    assert _ast([("area", {"base": 10.0, "height": 5, "sides": []})]).valid  # BFCL: [] matches ""
    failures = {
        "simple_function_checker:wrong_func_name": [("weather", {"city": "Paris"})],
        "simple_function_checker:missing_required": [("area", {"base": 10.0})],
        "simple_function_checker:unexpected_param": [("area", {"base": 10.0, "height": 5, "color": "red"})],
        "value_error:others": [("area", {"base": 11.0, "height": 5})],
        "type_error:simple": [("area", {"base": 10.0, "height": 5.0})],  # float not accepted for int
        "value_error:string": [("area", {"base": 10.0, "height": 5, "unit": "mm"})],
        "value_error:list": [("area", {"base": 10.0, "height": 5, "sides": [4, 3]})],  # list order matters
        "value_error:dict_value": [("area", {"base": 10.0, "height": 5, "opts": {"round": False}})],
        "ast:wrong_count": [("area", {"base": 10.0, "height": 5})] * 2,
    }
    for error_type, calls in failures.items():
        result = _ast(calls)
        assert not result.valid and result.error_type == error_type, (error_type, result)
    assert not _ast([]).valid
    strict = [{"area": {"base": [10.0], "height": [5], "sides": [[3, 4]]}}]
    assert _ast([("area", {"base": 10.0, "height": 5, "sides": ["3", "4"]})], strict).error_type == "type_error:nested"
    bool_for_int = _ast([("area", {"base": 10.0, "height": True})])
    assert not bool_for_int.valid


def test_ast_optional_parameter_must_be_given_when_truth_has_no_blank():
    truth = [{"weather": {"city": ["Paris"], "days": [3]}}]
    assert _ast([("weather", {"city": "paris", "days": 3})], truth).valid
    result = _ast([("weather", {"city": "Paris"})], truth)
    assert not result.valid and result.error_type == "simple_function_checker:missing_optional"


def test_ast_parallel_is_order_free_but_multiple_is_not_parallel():
    truth = [{"weather": {"city": ["Paris"], "days": ["", 1]}}, {"weather": {"city": ["New York, NY"], "days": [2]}}]
    paris, new_york = ("weather", {"city": "Paris"}), ("weather", {"city": "new york ny", "days": 2})
    assert _ast([paris, new_york], truth, "parallel").valid
    assert _ast([new_york, paris], truth, "parallel").valid
    assert not _ast([new_york, new_york], truth, "parallel").valid
    assert not _ast([paris], truth, "parallel").valid
    one = [{"weather": {"city": ["Paris"], "days": ["", 1]}}]
    assert _ast([paris], one, "multiple").valid
    assert not _ast([paris, paris], one, "multiple").valid


def test_relevance_and_agentic():
    assert check_relevance([], "irrelevance").valid and check_relevance([], "live_irrelevance").valid
    assert not check_relevance([("weather", {"city": "Paris"})], "irrelevance").valid
    assert check_relevance([("weather", {"city": "Paris"})], "live_relevance").valid
    assert not check_relevance([], "live_relevance").valid
    assert check_agentic("The answer is Zhang Yiming.", ["Zhang Yiming"]).valid
    assert not check_agentic("The answer is Zhang Yiminger.", ["Zhang Yiming"]).valid
    assert standardize_string("New York, N.Y.") == "newyorkny"


def test_real_single_turn_entry():
    catalog = load_bfcl_catalog(["simple_python"])
    entry = load_bfcl_entries(["simple_python"])[0]
    assert check_entry(entry, [("calculate_triangle_area", {"base": 10, "height": 5, "unit": "units"})], catalog).valid
    assert not check_entry(entry, [("calculate_triangle_area", {"base": 10, "height": 6})], catalog).valid


# ---------------------------------------------------------------- multi turn, real entries


@pytest.fixture(scope="module")
def multi_turn():
    entries = {e.id: e for e in load_bfcl_entries(["multi_turn_base", "multi_turn_miss_func"])}
    return entries


def _as_model_calls(entry):
    order = BfclExecutor(entry.initial_config, entry.involved_classes).param_order
    return [[call for text in turn for call in parse_call(text, order)] for turn in entry.ground_truth]


def _check(entry, model_turns):
    return check_multi_turn(model_turns, entry.ground_truth, entry.initial_config, entry.involved_classes)


def test_multi_turn_ground_truth_passes_against_itself(multi_turn):
    base = [e for e in multi_turn.values() if e.category == "multi_turn_base"]
    checked = [*base, multi_turn["multi_turn_miss_func_0"]]
    assert len(checked) == 201
    for entry in checked:
        assert _check(entry, _as_model_calls(entry)).valid, entry.id
    entry = multi_turn["multi_turn_base_0"]
    assert check_entry(entry, _as_model_calls(entry), load_bfcl_catalog(["multi_turn_base"])).valid


def test_multi_turn_dropped_call_fails(multi_turn):
    entry = multi_turn["multi_turn_base_0"]
    model = _as_model_calls(entry)
    assert model[0][1][0] == "mkdir"
    del model[0][1]  # never creates 'temp'
    result = _check(entry, model)
    assert not result.valid and result.error_type == "multi_turn:instance_state_mismatch"
    assert "GorillaFileSystem" in result.error


def test_multi_turn_changed_argument_fails(multi_turn):
    entry = multi_turn["multi_turn_base_0"]
    model = _as_model_calls(entry)
    assert model[1][1] == ("grep", {"file_name": "final_report.pdf", "pattern": "budget analysis"})
    model[1][1] = ("grep", {"file_name": "final_report.pdf", "pattern": "revenue"})  # state same, answer wrong
    result = _check(entry, model)
    assert not result.valid and result.error_type == "multi_turn:execution_response_mismatch"


def test_multi_turn_empty_turn_and_turn_count(multi_turn):
    entry = multi_turn["multi_turn_base_0"]
    model = _as_model_calls(entry)
    model[2] = []
    assert _check(entry, model).error_type == "multi_turn:empty_turn_model_response"
    assert _check(entry, _as_model_calls(entry)[:-1]).error_type == "multi_turn:force_terminated"
