"""Stage 3 training trajectories from BFCL ground truth: the calls are executed on the real backends, so every
observation the model learns from is what the tool returned.

`bfcl_trajectory(entry, catalog)` builds one `TrainingTrajectory`; `bfcl_agent_examples` renders the training
entries' trajectories as agent-tuning examples (`core.examples.trajectory_example`).
"""

from __future__ import annotations

from collections.abc import Iterable

from .bfcl import BfclEntry, function_name, parse_call
from .examples import FINISH_THOUGHT, Example, TrainingTrajectory, call_thought, finish_step, trajectory_example
from .executors import BfclExecutor
from .prompts import Step, format_arguments
from .splits import entry_texts

NO_TOOL_THOUGHT = "None of my tools fits this request."
NO_TOOL_ANSWER = "I cannot help with this using the available tools."
MISSING_INFO_THOUGHT = "I cannot complete this request as asked."
MISSING_INFO_ANSWER = "I cannot do this yet: a needed tool or detail is missing. Please tell me more."
CONTINUE_TEXT = "Continue."  # the user text of a BFCL turn that only adds functions


def _first_acceptable(values: object) -> object:
    """BFCL ground truth lists acceptable values per parameter ("" = may be left out); nested dicts too."""
    value = values[0] if isinstance(values, list) and values else values
    if isinstance(value, dict):
        picked = {key: _first_acceptable(inner) for key, inner in value.items()}
        return {key: inner for key, inner in picked.items() if inner != ""}
    return value


def _call_steps(executor: BfclExecutor, catalog, calls: list[tuple[str, dict]]) -> list[Step]:
    """Execute calls (tool id, arguments) in order; one Step each, with the real observation."""
    steps = []
    for tool_id, arguments in calls:
        tool = catalog[tool_id]
        observation = executor.call(tool, arguments)
        steps.append(Step(call_thought(tool), tool_id, arguments, observation.content))
    return steps


def _calls_answer(steps: list[Step], catalog) -> str:
    """Final answer of a single-turn task: the calls made (their backends are not executable here)."""
    return (
        "Called "
        + "; ".join(f"{function_name(catalog[s.tool_id])}({format_arguments(s.arguments)})" for s in steps)
        + "."
    )


def bfcl_trajectory(entry: BfclEntry, catalog, max_answer_chars: int = 300) -> TrainingTrajectory | None:
    """The ground-truth trajectory of a BFCL entry, its calls executed on a fresh `BfclExecutor`.

    Single-turn AST entries: the ground-truth calls (first acceptable value of each parameter), then Finish
    listing the calls. Irrelevance entries: Finish right away. Multi-turn entries: per turn, the ground-truth
    calls run on the entry's backends (initial config from the entry), then Finish with the last
    observation (a turn with no user message, which only adds functions, gets CONTINUE_TEXT); a turn without
    ground-truth calls (missing function or parameter) finishes with a request for what is missing. Relevance
    and agentic entries (no ground-truth calls) give None.
    """
    texts = entry_texts(entry)
    if entry.kind == "irrelevance":
        return TrainingTrajectory(((texts[0], (finish_step(NO_TOOL_THOUGHT, NO_TOOL_ANSWER),)),), entry.id)
    if entry.kind == "ast":
        by_name = {function_name(catalog[t]): t for t in entry.pool}
        calls = [
            (by_name[name], _first_acceptable([params])) for item in entry.ground_truth for name, params in item.items()
        ]
        steps = _call_steps(BfclExecutor({}, ()), catalog, calls)
        final = finish_step(FINISH_THOUGHT, _calls_answer(steps, catalog)[:max_answer_chars])
        return TrainingTrajectory(((texts[0], tuple(steps) + (final,)),), entry.id)
    if entry.kind != "multi_turn":
        return None
    executor = BfclExecutor(
        entry.initial_config, entry.involved_classes, long_context=entry.category.endswith("long_context")
    )
    offered = {
        function_name(catalog[t]): t for t in entry.pool + tuple(t for ids in entry.held_out.values() for t in ids)
    }
    turns = []
    for messages, calls_text in zip(entry.turns, entry.ground_truth):
        user = " ".join(m["content"] for m in messages if m.get("role") == "user")
        calls = [
            (offered[name], arguments)
            for text in calls_text
            for name, arguments in parse_call(text, executor.param_order)
        ]
        steps = _call_steps(executor, catalog, calls)
        if not user:  # a turn that only adds functions: its calls continue the previous turn's answer
            user = CONTINUE_TEXT
        final = (
            finish_step(FINISH_THOUGHT, steps[-1].observation[:max_answer_chars])
            if steps
            else finish_step(MISSING_INFO_THOUGHT, MISSING_INFO_ANSWER)
        )
        turns.append((user, tuple(steps) + (final,)))
    return TrainingTrajectory(tuple(turns), entry.id)


def bfcl_agent_examples(
    toolgen, entries: Iterable[BfclEntry], max_observation_chars: int = 300, documented: bool = False
) -> list[Example]:
    """Stage 3 examples from BFCL training entries (see `bfcl_trajectory`); entries without one are skipped.
    `documented`: each call reads its tool's documentation before the Action Input (`trajectory_example`)."""
    examples = []
    for entry in entries:
        trajectory = bfcl_trajectory(entry, toolgen.catalog, max_observation_chars)
        if trajectory is not None:
            examples.append(trajectory_example(toolgen, trajectory, max_observation_chars, documented))
    return examples
