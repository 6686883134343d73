"""ToolBench's GPT-3.5 reference answers (`reference_answers/<group>.json`) as the reference side of annotation.

Each answer becomes a `ReferenceAnswer`: its query, the tools it offered and the tools it called, resolved to
catalog ids, and its run as a stored trajectory of system `gpt-3.5-reference` in the step format of the agent
evaluation's trajectories (core/agent.py events as dicts), so the Annotate tab can pair it with a system's run
on the same query.

Names: the answer names functions as ToolBench does (`toolbench_function_name`); a name that no catalog tool has,
or that two catalog tools share, does not resolve, and neither does Finish. Steps, in the recorded order (a
tree that branches is read depth first, the order of its search):
- an assistant message is a thought;
- a tool message is an action, its arguments (ToolBench's parameter names mapped back to the catalog's, checked
  with `validate_arguments`) and an observation holding the tool message as recorded, cut to 100 characters
  and marked `"truncated": true`. Arguments cut short by that limit are stored as `{}` with a problem saying so.
  An action on a name that does not resolve keeps the function name as its `tool_id`;
- a Finish message is the Finish action, followed by the final answer: the `final_answer` text of a
  `give_answer` answer, nothing when the answer gave up or is empty, the recorded text when it was cut short.
The trajectory's metrics: `finished` (a final answer was given), `steps` (actions, Finish included), `calls`,
`hallucinated` (calls to a name outside the answer's available tools) and `unresolved_calls` (calls to an
available tool that does not resolve in the catalog).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from core.agent import ActionEvent, ArgumentsEvent, FinalAnswerEvent, ObservationEvent, ThoughtEvent
from core.executors.base import validate_arguments
from core.indexing import FINISH
from core.toolbench import (
    FINISH_FUNCTION,
    catalog_arguments,
    check_answer_node,
    function_index,
    given_answer,
    parse_reference_call,
    read_json,
    reference_messages,
)
from core.tools import CatalogError, ToolCatalog

from .store import StoredTrajectory

REFERENCE_SYSTEM = "gpt-3.5-reference"
CUT_ARGUMENTS = "the arguments were cut short in the record (tool messages keep their first 100 characters)"


@dataclass(frozen=True)
class ReferenceAnswer:
    """One reference answer, its tools resolved to catalog ids (see the module docstring)."""

    group: str  # the answers file's stem, e.g. G1_instruction
    query_id: str
    query: str
    offered: tuple[str, ...]  # the available tools that resolve, in order
    called: tuple[str, ...]  # the offered tools it called, in order of first call
    steps: list[dict]
    final_answer: str  # "" when it gave none
    metrics: dict

    def trajectory(self, dataset: str) -> StoredTrajectory:
        """The answer as a stored trajectory of REFERENCE_SYSTEM under `dataset`."""
        return StoredTrajectory(
            REFERENCE_SYSTEM, dataset, self.query_id, self.query, self.steps, self.final_answer, self.metrics
        )


def load_reference_answers(
    path: Path | str, catalog: ToolCatalog, index: dict[str, str | None] | None = None
) -> list[ReferenceAnswer]:
    """Every answer of a reference-answers file, in file order. `index`: `function_index(catalog)`, when the
    caller already has it. A malformed file raises CatalogError naming the file and the query_id."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise CatalogError(str(path), "-", "expected a JSON object keyed by query_id")
    index = function_index(catalog) if index is None else index
    return [_reference_answer(entry, str(path), str(query_id), catalog, index) for query_id, entry in data.items()]


def _reference_answer(
    entry: object, source: str, query_id: str, catalog: ToolCatalog, index: dict[str, str | None]
) -> ReferenceAnswer:
    _, final_answer = reference_messages(entry, source, query_id)  # checks the record's shape
    functions = entry.get("available_tools")
    if not isinstance(functions, list) or not all(
        isinstance(f, dict) and isinstance(f.get("name"), str) for f in functions
    ):
        raise CatalogError(source, query_id, "available_tools must be a list of functions with a name")
    available = [f["name"] for f in functions]
    offered = {name: index[name] for name in available if index.get(name)}
    steps, calls, step = [], [], 0
    for message in _recorded_order(entry["answer"]["answer_details"], source, query_id):
        if message["role"] == "assistant" and message["message"].strip():
            steps.append(ThoughtEvent(turn=0, step=step, text=message["message"].strip()).to_dict())
        if message["role"] != "tool":
            continue
        name, arguments = parse_reference_call(message["message"], source, query_id)
        tool_id = FINISH if name == FINISH_FUNCTION else offered.get(name, name)
        steps.append(
            ActionEvent(turn=0, step=step, tool_id=tool_id, code=name, log_prob=None, alternatives=[]).to_dict()
        )
        if tool_id == FINISH:
            continue
        calls.append(name)
        steps.append(_arguments_event(step, tool_id, arguments, catalog).to_dict())
        steps.append(
            {
                **ObservationEvent(
                    turn=0,
                    step=step,
                    tool_id=tool_id,
                    content=message["message"],
                    ok=True,
                    error=None,
                    simulated=False,
                    executed=True,
                ).to_dict(),
                "truncated": True,
            }
        )
        step += 1
    answer = _answer_text(final_answer)
    if answer:
        steps.append(FinalAnswerEvent(turn=0, step=step, text=answer).to_dict())
    metrics = {
        "finished": float(bool(answer)),
        "steps": float(sum(s["kind"] == "action" for s in steps)),
        "calls": float(len(calls)),
        "hallucinated": float(sum(name not in available for name in calls)),
        "unresolved_calls": float(sum(name in available and name not in offered for name in calls)),
    }
    return ReferenceAnswer(
        Path(source).stem,
        query_id,
        entry["query"],
        tuple(dict.fromkeys(offered.values())),
        tuple(dict.fromkeys(offered[name] for name in calls if name in offered)),
        steps,
        answer,
        metrics,
    )


def _recorded_order(nodes: list, source: str, query_id: str) -> Iterator[dict]:
    """The messages of an answer tree depth first (for a chain: in order)."""
    for node in nodes:
        yield check_answer_node(node, source, query_id)
        yield from _recorded_order(node["next"], source, query_id)


def _arguments_event(step: int, tool_id: str, arguments: dict | None, catalog: ToolCatalog) -> ArgumentsEvent:
    """The arguments of a call, parameter names mapped back to the catalog tool's, with their problems."""
    tool = catalog.get(tool_id)
    if arguments is None:
        return ArgumentsEvent(turn=0, step=step, tool_id=tool_id, arguments={}, text="", problems=[CUT_ARGUMENTS])
    if tool is None:
        return ArgumentsEvent(turn=0, step=step, tool_id=tool_id, arguments=arguments, text="", problems=[])
    arguments = catalog_arguments(tool, arguments)
    return ArgumentsEvent(
        turn=0, step=step, tool_id=tool_id, arguments=arguments, text="", problems=validate_arguments(tool, arguments)
    )


def _answer_text(final_answer: str) -> str:
    """The answer given (see the module docstring)."""
    given = given_answer(final_answer)
    if given is not None:
        return given
    try:
        json.loads(final_answer, strict=False)
    except ValueError:  # empty, or cut short
        return final_answer.strip()
    return ""  # gave up, or answered nothing
