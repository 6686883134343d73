"""Executors: safe_call, argument validation and the BFCL backend executor (core/executors)."""

import json
import time

import pytest

from core.bfcl import load_bfcl_catalog, load_bfcl_entries
from core.executors import BfclExecutor, Observation, safe_call, validate_arguments
from core.tools import Tool


@pytest.fixture(scope="module")
def catalog():
    return load_bfcl_catalog()


def _tool(properties, required=(), tool_name="bfcl", api_name="f"):
    return Tool(
        id=f"{tool_name}&&{api_name}",
        category="test",
        tool_name=tool_name,
        api_name=api_name,
        description="",
        parameters={"type": "object", "properties": properties, "required": list(required)},
    )


# ---------------------------------------------------------------- safe_call


def test_safe_call_results():
    assert safe_call(lambda: "plain text") == Observation(content="plain text")
    assert json.loads(safe_call(lambda: {"a": [1, 2], "b": "é"}).content) == {"a": [1, 2], "b": "é"}


def test_safe_call_turns_failures_into_observations():
    crashed = safe_call(lambda: 1 / 0)
    assert not crashed.ok and crashed.executed and "ZeroDivisionError" in crashed.error
    exited = safe_call(lambda: exit(3))
    assert not exited.ok and "SystemExit" in exited.error
    start = time.perf_counter()
    slow = safe_call(lambda: time.sleep(2), timeout_s=0.05)
    assert time.perf_counter() - start < 1 and not slow.ok and "timed out" in slow.error
    assert json.loads(safe_call(lambda: {"value": {1, 2}}).content) == {"value": "{1, 2}"}  # leaves as str()
    circular = {"name": "loop"}
    circular["self"] = circular
    odd = safe_call(lambda: circular)
    assert not odd.ok and "not JSON-serialisable" in odd.error and "'name': 'loop'" in odd.content
    big = safe_call(lambda: "x" * 50, max_chars=10)
    assert not big.ok and "too large" in big.error
    assert safe_call(lambda: "x" * 50, max_chars=None).ok


# ---------------------------------------------------------------- validate_arguments


def test_validate_arguments():
    tool = _tool(
        {
            "n": {"type": "integer"},
            "x": {"type": "number"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "opts": {"type": "object", "properties": {"on": {"type": "boolean"}}},
            "any": {},
        },
        required=["n"],
    )
    assert validate_arguments(tool, {"n": 1, "x": 2, "tags": ["a"], "opts": {"on": True}, "any": [None]}) == []
    assert validate_arguments(tool, {"x": 1.5}) == ["missing required parameter 'n'"]
    assert validate_arguments(tool, {"n": 1, "zz": 0}) == ["unknown parameter 'zz'"]
    assert validate_arguments(tool, {"n": True}) == ["'n': expected integer, got bool"]
    assert validate_arguments(tool, {"n": 1, "tags": ["a", 2]}) == ["'tags'[1]: expected string, got int"]
    assert validate_arguments(tool, {"n": 1, "opts": {"on": "yes"}}) == ["'opts'.on: expected boolean, got str"]
    assert validate_arguments(tool, ["n"]) == ["arguments must be a JSON object, got list"]


# ---------------------------------------------------------------- BfclExecutor


def test_demo_state_persists_within_a_conversation_and_resets(catalog):
    executor = BfclExecutor()
    ls, mkdir, cd = (catalog[f"GorillaFileSystem&&{name}"] for name in ("ls", "mkdir", "cd"))
    listing = json.loads(executor.call(ls, {}).content)
    assert listing == {"current_directory_content": ["notes.txt", "projects", "archive"]}
    assert executor.call(mkdir, {"dir_name": "drafts"}).ok
    assert "drafts" in json.loads(executor.call(ls, {}).content)["current_directory_content"]
    assert executor.call(cd, {"folder": "projects"}).ok
    assert json.loads(executor.call(ls, {}).content)["current_directory_content"] == ["report.md", "todo.txt"]
    assert "drafts" not in json.loads(BfclExecutor().call(ls, {}).content)["current_directory_content"]  # own state
    executor.reset()
    assert "drafts" not in json.loads(executor.call(ls, {}).content)["current_directory_content"]
    stock = json.loads(executor.call(catalog["TradingBot&&get_stock_info"], {"symbol": "NVDA"}).content)
    assert stock["price"] == 220.34


def test_entry_initial_config_is_loaded(catalog):
    entry = next(e for e in load_bfcl_entries(["multi_turn_base"]) if e.id == "multi_turn_base_0")
    executor = BfclExecutor(entry.initial_config, entry.involved_classes)
    assert set(executor.instances) == {"TwitterAPI", "GorillaFileSystem"}
    assert executor.call(catalog["GorillaFileSystem&&cd"], {"folder": "document"}).ok
    listing = json.loads(executor.call(catalog["GorillaFileSystem&&ls"], {}).content)
    assert listing["current_directory_content"] == ["final_report.pdf", "previous_report.pdf"]
    other = executor.call(catalog["TradingBot&&get_stock_info"], {"symbol": "AAPL"})
    assert not other.ok and not other.executed and "not part of this conversation" in other.error


def test_call_only_functions_are_validated_not_executed(catalog):
    tool = next(t for t in load_bfcl_catalog(["simple_python"]) if t.api_name.startswith("calculate_triangle_area"))
    executor = BfclExecutor()
    observation = executor.call(tool, {"base": 10, "height": 5})
    assert observation.ok and not observation.executed and "not executed" in observation.content
    invalid = executor.call(tool, {"base": "ten"})
    assert not invalid.ok and not invalid.executed and "missing required parameter 'height'" in invalid.error
    web = executor.call(catalog["WebSearchAPI&&search_engine_query"], {"keywords": "bfcl"})  # backend not installed
    assert web.ok and not web.executed


def test_errors_become_observations(catalog):
    executor = BfclExecutor()
    wrong_type = executor.call(catalog["GorillaFileSystem&&cd"], {"folder": 3})
    assert not wrong_type.ok and not wrong_type.executed and "expected string" in wrong_type.error
    unknown = executor.execute("no_such_function", {})
    assert not unknown.ok and "no function 'no_such_function'" in unknown.error
    crashed = executor.execute("cd", {"bogus": 1})  # TypeError inside the backend call
    assert not crashed.ok and crashed.executed and "TypeError" in crashed.error
    missing = json.loads(executor.call(catalog["GorillaFileSystem&&cd"], {"folder": "nowhere"}).content)
    assert "error" in missing  # the backend's own error reply
    with pytest.raises(ValueError, match="unknown BFCL backend class"):
        BfclExecutor(involved_classes=["NoSuchAPI"])
    with pytest.raises(ValueError, match="initial_config for GorillaFileSystem is malformed"):
        BfclExecutor({"GorillaFileSystem": {"root": {"home": {"type": "directory"}}}}, ["GorillaFileSystem"])


def test_caller_arguments_are_not_mutated(catalog):
    executor = BfclExecutor({"TwitterAPI": {"username": "u", "password": "p"}}, ["TwitterAPI"])
    executor.execute("authenticate_twitter", {"username": "u", "password": "p"})
    arguments = {"content": "hi", "tags": [], "mentions": ["@a"]}
    tweet = json.loads(executor.execute("post_tweet", arguments).content)
    executor.execute("mention", {"tweet_id": tweet["id"], "mentioned_usernames": ["@b"]})
    assert arguments["mentions"] == ["@a"]
    assert executor.state()["TwitterAPI"]["tweets"][tweet["id"]]["mentions"] == ["@a", "@b"]
