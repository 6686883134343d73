"""ToolBench / StableToolBench loaders: the `api_list` corpus format, the solvable-query files, and agent
trajectories made from the GPT-3.5 reference answers, or synthesised where no complete answer exists.

Synthetic trajectories (`synthetic_trajectories`): the shipped reference answers give almost no complete
trajectory for the training queries, so each training query without one gets a templated trajectory. Each
gold tool is called in order with its required parameters set to their documented `default` values
(`default_arguments`: optional parameters left out, a number or boolean default written as text read as JSON,
e.g. "10" -> 10), answered by `ToolBenchSimulator`, the environment of the agent evaluation; then Finish
answers with a summary of the observations. A query with a gold tool whose required parameter has no usable
default, or whose defaults fail `validate_arguments`, gets no trajectory: the simulator would refuse such a
call, and the model should not learn invalid calls.
"""

from __future__ import annotations

import ast
import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path

from .examples import FINISH_THOUGHT, TrainingTrajectory, call_thought, finish_step
from .executors.base import validate_arguments
from .executors.toolbench import SIMULATED_KEY, ToolBenchSimulator
from .prompts import Step
from .splits import normalise
from .tools import CatalogError, Query, Tool, ToolCatalog

_REQUIRED_API_FIELDS = ("tool_name", "api_name")
_TYPE_MAP = {
    "string": "string",
    "str": "string",
    "number": "number",
    "float": "number",
    "integer": "integer",
    "int": "integer",
    "boolean": "boolean",
    "bool": "boolean",
    "array": "array",
    "object": "object",
    "enum": "string",
    "date": "string",
    "time": "string",
    "datetime": "string",
}


def read_json(path: Path | str) -> object:
    """Parse a JSON file, raising CatalogError (naming the file and position) on malformed JSON."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise CatalogError(str(path), "-", "file not found") from None
    except json.JSONDecodeError as e:
        raise CatalogError(str(path), f"line {e.lineno} col {e.colno}", f"invalid JSON: {e.msg}") from None


def api_to_tool(entry: object, source: str, index: int) -> Tool:
    """Convert one ToolBench `api_list` entry to a Tool; raise CatalogError if it is malformed."""
    if not isinstance(entry, dict):
        raise CatalogError(source, index, f"expected an object, got {type(entry).__name__}")
    for name in _REQUIRED_API_FIELDS:
        if not isinstance(entry.get(name), str) or not entry[name].strip():
            raise CatalogError(source, index, f"missing or empty field {name!r}")
    properties, required = {}, []
    for group in ("required_parameters", "optional_parameters"):
        params = entry.get(group) or []
        if not isinstance(params, list):
            raise CatalogError(source, index, f"{group!r} must be a list")
        for param in params:
            if not isinstance(param, dict) or not isinstance(param.get("name"), str):
                raise CatalogError(source, index, f"a parameter in {group!r} has no name")
            spec = {
                "type": _TYPE_MAP.get(str(param.get("type", "string")).lower(), "string"),
                "description": str(param.get("description") or ""),
            }
            if param.get("default") not in (None, ""):
                spec["default"] = param["default"]
            properties[param["name"]] = spec
            if group == "required_parameters":
                required.append(param["name"])
    tool_name, api_name = entry["tool_name"], entry["api_name"]
    return Tool(
        id=f"{tool_name}&&{api_name}",
        category=str(entry.get("category_name") or ""),
        tool_name=tool_name,
        api_name=api_name,
        description=str(entry.get("api_description") or ""),
        parameters={"type": "object", "properties": properties, "required": required},
        response=entry.get("template_response"),
        source="toolbench",
    )


def load_toolbench_corpus(path: Path | str) -> ToolCatalog:
    """Load a ToolBench corpus (a JSON list of `api_list` entries) into a catalog."""
    data = read_json(path)
    if not isinstance(data, list):
        raise CatalogError(str(path), "-", "expected a JSON list of api_list entries")
    catalog = ToolCatalog()
    for index, entry in enumerate(data):
        catalog.add(api_to_tool(entry, str(path), index), source=str(path), entry=index)
    return catalog


def load_toolbench_queries(path: Path | str, catalog: ToolCatalog | None = None) -> list[Query]:
    """Load a StableToolBench solvable-queries file.

    Gold tools come from `relevant APIs`, the pool from `api_list`. With a catalog, every named API must be in it
    (an unknown one raises CatalogError).
    """
    data = read_json(path)
    if not isinstance(data, list):
        raise CatalogError(str(path), "-", "expected a JSON list of queries")
    group = Path(path).stem
    queries, seen = [], set()
    for index, row in enumerate(data):
        if not isinstance(row, dict):
            raise CatalogError(str(path), index, "expected an object")
        for name in ("query_id", "query", "relevant APIs"):
            if name not in row:
                raise CatalogError(str(path), index, f"missing field {name!r}")
        if not isinstance(row["query"], str) or not row["query"].strip():
            raise CatalogError(str(path), index, "empty query text")
        query_id = str(row["query_id"])
        if query_id in seen:
            raise CatalogError(str(path), index, f"duplicate query_id {query_id!r}")
        seen.add(query_id)
        gold = []
        for pair in row["relevant APIs"]:
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
                raise CatalogError(str(path), index, f"relevant API {pair!r} is not a [tool_name, api_name] pair")
            gold.append(f"{pair[0]}&&{pair[1]}")
        pool = [api_to_tool(api, str(path), index).id for api in row.get("api_list") or []]
        if catalog is not None:
            unknown = [t for t in gold + pool if t not in catalog]
            if unknown:
                raise CatalogError(str(path), index, f"unknown tool {unknown[0]!r} (not in the corpus)")
        queries.append(
            Query(
                id=query_id,
                text=row["query"],
                gold=tuple(dict.fromkeys(gold)),
                pool=tuple(dict.fromkeys(pool)),
                source=f"toolbench:{group}",
            )
        )
    return queries


# ---------------------------------------------------------------- reference answers -> agent trajectories

log = logging.getLogger(__name__)
FINISH_FUNCTION = "Finish"
_NON_IDENTIFIER = re.compile(r"[^\u4e00-\u9fa5a-zA-Z0-9_^]")  # ToolBench's character class (it keeps "^")
_RESERVED = ("from", "class", "return", "false", "true", "id", "and")
_STRING = r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*\""""  # a Python string literal, closed
_CALL = re.compile(rf"\{{'name': (?P<name>{_STRING}), 'arguments': (?P<arguments>{_STRING})?")


def _standardize(name: str) -> str:
    """ToolBench's `standardize`: runs of other characters become one "_", lower case, no outer "_"."""
    return re.sub(r"_+", "_", _NON_IDENTIFIER.sub("_", name)).lower().strip("_")


def function_identifier(name: str) -> str:
    """ToolBench's name for an API or parameter: standardized, and `is_` before reserved words such as `id`."""
    name = _standardize(name)
    return f"is_{name}" if name in _RESERVED else name


def toolbench_function_name(tool: Tool) -> str:
    """The OpenAI function name ToolBench gives an API: `<api>_for_<tool>`, standardized, its last 64 characters."""
    return f"{function_identifier(tool.api_name)}_for_{_standardize(tool.tool_name)}"[-64:]


def function_index(tools: Iterable[Tool]) -> dict[str, str | None]:
    """ToolBench function name -> tool id, for `tools` (None for a name two of them share: it does not resolve)."""
    index: dict[str, str | None] = {}
    for tool in tools:
        name = toolbench_function_name(tool)
        index[name] = None if name in index else tool.id
    return index


def catalog_arguments(tool: Tool, arguments: dict) -> dict:
    """A recorded call's arguments with ToolBench's standardized parameter names (e.g. `is_id`) mapped back to
    the tool's own; unknown names are kept."""
    names = {function_identifier(p): p for p in tool.parameters.get("properties") or {}}
    return {names.get(key, key): value for key, value in arguments.items()}


def check_answer_node(node: object, source: str, query_id: str) -> dict:
    """`node` of a reference answer's `answer_details` tree, checked: a {role, message, next} object."""
    if not (
        isinstance(node, dict)
        and isinstance(node.get("role"), str)
        and isinstance(node.get("message"), str)
        and isinstance(node.get("next"), list)
    ):
        raise CatalogError(source, query_id, "answer_details: every node needs role, message and next")
    return node


def load_reference_trajectories(
    path: Path | str, catalog: ToolCatalog, queries: Iterable[Query], max_answer_chars: int = 300
) -> list[TrainingTrajectory]:
    """Agent trajectories from a reference-answers file (`reference_answers/<group>.json`), for `queries` only.

    Pass the training queries of this file's group (query ids are unique within a group): answers to any
    other query (another query_id, or the same id with another text) are not read. Answer messages other than
    tool calls (system, user, assistant text) are not used: thoughts are templated. An answer becomes a
    trajectory only when it is complete:
    - every call names a function of the query's offered tools (`pool` and `gold`) by its ToolBench name
      (`toolbench_function_name`; a name shared by two offered tools does not resolve);
    - every call's arguments are a whole JSON object (tool messages are cut to 100 characters, which cuts
      many arguments short);
    - it is one chain of messages ending with a Finish call, and `final_answer` says `give_answer` with a
      non-empty answer.
    Steps: the templated thought (`call_thought`), the catalog tool, the arguments (ToolBench's standardized
    parameter names mapped back to the catalog's), and the reply of `ToolBenchSimulator`, the environment of
    the agent evaluation (the recorded replies are cut short); then `finish_step(FINISH_THOUGHT, answer)`
    with the answer cut to `max_answer_chars`. How many answers were kept and skipped is logged (INFO).
    A malformed file raises CatalogError naming the file and the query_id.
    """
    data = read_json(path)
    if not isinstance(data, dict):
        raise CatalogError(str(path), "-", "expected a JSON object keyed by query_id")
    wanted = {query.id: query for query in queries}
    simulator = ToolBenchSimulator()
    trajectories, asked = [], 0
    for query_id, entry in data.items():
        messages, final_answer = reference_messages(entry, str(path), query_id)
        query = wanted.get(query_id)
        if query is None or normalise(query.text) != normalise(entry["query"]):
            continue
        asked += 1
        steps = _steps(messages, final_answer, query, catalog, simulator, str(path), query_id, max_answer_chars)
        if steps is not None:
            trajectories.append(TrainingTrajectory(((query.text, steps),), f"{Path(path).stem}:{query_id}"))
    log.info(
        "%s: %d of %d reference answers to the given queries kept, %d incomplete ones skipped",
        path,
        len(trajectories),
        asked,
        asked - len(trajectories),
    )
    return trajectories


def reference_messages(entry: object, source: str, query_id: str) -> tuple[list[dict] | None, str]:
    """(the messages along the answer's single chain, or None when the tree branches; the final_answer text)."""
    answer = entry.get("answer") if isinstance(entry, dict) else None
    if not (
        isinstance(entry, dict)
        and isinstance(entry.get("query"), str)
        and isinstance(answer, dict)
        and isinstance(answer.get("final_answer"), str)
        and isinstance(answer.get("answer_details"), list)
    ):
        raise CatalogError(source, query_id, "expected {query, answer: {final_answer, answer_details}}")
    messages, level = [], answer["answer_details"]
    while level:
        for node in level:
            check_answer_node(node, source, query_id)
        if len(level) > 1:
            return None, answer["final_answer"]
        messages.append(level[0])
        level = level[0]["next"]
    return messages, answer["final_answer"]


def _steps(
    messages: list[dict] | None,
    final_answer: str,
    query: Query,
    catalog: ToolCatalog,
    simulator: ToolBenchSimulator,
    source: str,
    query_id: str,
    max_answer_chars: int,
) -> tuple | None:
    """The steps of a complete answer (see `load_reference_trajectories`), else None."""
    answer = given_answer(final_answer)
    if messages is None or answer is None:
        return None
    calls = [parse_reference_call(m["message"], source, query_id) for m in messages if m["role"] == "tool"]
    if not calls or calls[-1][0] != FINISH_FUNCTION:
        return None
    offered = function_index(catalog[t] for t in dict.fromkeys(query.pool + query.gold) if t in catalog)
    steps = []
    for name, arguments in calls[:-1]:
        tool_id = offered.get(name)
        if tool_id is None or arguments is None:
            return None
        tool = catalog[tool_id]
        arguments = catalog_arguments(tool, arguments)
        observation = simulator.call(tool, arguments).content
        steps.append(Step(call_thought(tool), tool.id, arguments, observation))
    return tuple(steps) + (finish_step(FINISH_THOUGHT, answer[:max_answer_chars]),)


def parse_reference_call(message: str, source: str, query_id: str) -> tuple[str, dict | None]:
    """(function name, arguments) of a tool message (the repr of a dict, cut to 100 characters); the
    arguments are None when they were cut short or are not a JSON object."""
    match = _CALL.match(message)
    if match is None:
        raise CatalogError(
            source, query_id, f"tool message is not a {{'name': …, 'arguments': …}} record: {message[:60]!r}"
        )
    name = ast.literal_eval(match["name"])
    if match["arguments"] is None:
        return name, None
    try:
        arguments = json.loads(ast.literal_eval(match["arguments"]))
    except (ValueError, SyntaxError):
        return name, None
    return name, arguments if isinstance(arguments, dict) else None


def given_answer(final_answer: str) -> str | None:
    """The answer text of a `give_answer` final answer (a JSON object as text), else None."""
    try:
        parsed = json.loads(final_answer, strict=False)  # some answers hold raw newlines
    except ValueError:
        return None  # empty, or cut short
    if not isinstance(parsed, dict) or parsed.get("return_type") != "give_answer":
        return None
    answer = parsed.get("final_answer")
    return answer.strip() if isinstance(answer, str) and answer.strip() else None


# ---------------------------------------------------------------- synthetic trajectories

_SUMMARY_CHARS = 100  # characters of each observation quoted in a synthetic final answer


def default_arguments(tool: Tool) -> dict | None:
    """The tool's required parameters set to their documented defaults (optional ones left out), or None when
    a required parameter has none. A default written as text for a number or boolean parameter ("10", "true")
    becomes that JSON value; anything else is kept as documented (`validate_arguments` judges it)."""
    properties = tool.parameters.get("properties") or {}
    arguments = {}
    for name in tool.parameters.get("required") or []:
        spec = properties.get(name) or {}
        if "default" not in spec:
            return None
        arguments[name] = _typed(spec["default"], spec.get("type"))
    return arguments


def _typed(value: object, kind: object) -> object:
    if isinstance(value, str) and kind in ("number", "integer", "boolean"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def synthetic_trajectories(
    queries: Iterable[Query], catalog: ToolCatalog, max_answer_chars: int = 300
) -> list[TrainingTrajectory]:
    """One single-turn trajectory per query whose gold tools can all be called with their defaults.

    Steps: for each gold tool in order, `call_thought(tool)`, the tool, `default_arguments(tool)` and the reply
    of a fresh `ToolBenchSimulator`; then `finish_step(FINISH_THOUGHT, answer)` with the answer
    "Results: <api name>: <observation, first 100 characters>; …" cut to `max_answer_chars`. Queries with no
    gold tool, a required parameter without a default, or defaults that fail `validate_arguments` are skipped
    (counts logged at INFO). A gold tool missing from the catalog raises CatalogError naming the query.
    """
    trajectories, skipped = [], 0
    for query in queries:
        trajectory = _synthetic_trajectory(query, catalog, max_answer_chars)
        if trajectory is None:
            skipped += 1
        else:
            trajectories.append(trajectory)
    log.info(
        "synthetic trajectories: %d queries kept, %d skipped (no gold tool, or a required parameter "
        "without a valid default)",
        len(trajectories),
        skipped,
    )
    return trajectories


def _synthetic_trajectory(query: Query, catalog: ToolCatalog, max_answer_chars: int) -> TrainingTrajectory | None:
    simulator, steps = ToolBenchSimulator(), []
    for tool_id in query.gold:
        tool = catalog.get(tool_id)
        if tool is None:
            raise CatalogError(query.source, query.id, f"gold tool {tool_id!r} is not in the catalog")
        arguments = default_arguments(tool)
        if arguments is None or validate_arguments(tool, arguments):
            return None
        observation = simulator.call(tool, arguments).content
        steps.append(Step(call_thought(tool), tool.id, arguments, observation))
    if not steps:
        return None
    results = "; ".join(f"{catalog[s.tool_id].api_name}: {_result_text(s.observation)[:_SUMMARY_CHARS]}" for s in steps)
    answer = finish_step(FINISH_THOUGHT, f"Results: {results}"[:max_answer_chars])
    return TrainingTrajectory(((query.text, tuple(steps) + (answer,)),), f"synthetic:{query.source}:{query.id}")


def _result_text(observation: str) -> str:
    """An observation without the simulator's `"_simulated": true` marker (a final answer should not quote it)."""
    try:
        data = json.loads(observation)
    except ValueError:
        return observation
    if not isinstance(data, dict) or SIMULATED_KEY not in data:
        return observation
    data.pop(SIMULATED_KEY)
    return json.dumps(data, ensure_ascii=False)
