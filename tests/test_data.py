"""Training-data builders: targets are exactly the code ids, loss masks cover only targets / assistant turns."""

import json

import pytest

from core.bfcl import load_bfcl_catalog, load_bfcl_entries
from core.bfcl_trajectories import bfcl_trajectory
from core.examples import (
    AGENT,
    FINISH_THOUGHT,
    MEMORIZATION,
    RETRIEVAL,
    TrainingTrajectory,
    memorization_examples,
    retrieval_examples,
    trajectory_example,
)
from core.indexing import FINISH
from core.prompts import Step, memorization_prompt, observation_ids, retrieval_prompt
from core.synthetic_queries import synthetic_queries
from core.tools import Query, ToolCatalog
from tests.helpers import tiny_toolgen


def assert_prompt_then_code(example, prompt, code):
    assert example.ids == tuple(prompt) + tuple(code)
    assert example.mask == (False,) * len(prompt) + (True,) * len(code)
    assert example.targets == list(code)


@pytest.mark.parametrize("scheme", ["atomic", "numeric"])
def test_memorization_targets_are_code_ids(smollm2_tokenizer, toy_catalog, scheme):
    toolgen = tiny_toolgen(smollm2_tokenizer, toy_catalog, scheme)
    examples = memorization_examples(toolgen)
    assert [e.tool_id for e in examples] == toy_catalog.ids and {e.stage for e in examples} == {MEMORIZATION}
    for example, tool in zip(examples, toy_catalog):
        assert_prompt_then_code(
            example, memorization_prompt(smollm2_tokenizer, tool.document()), toolgen.code_ids(tool.id)
        )


def test_memorization_documents_can_be_cut(smollm2_tokenizer, toy_catalog):
    toolgen = tiny_toolgen(smollm2_tokenizer, toy_catalog)
    full, cut = memorization_examples(toolgen), memorization_examples(toolgen, max_doc_tokens=8)
    assert all(len(c.ids) < len(f.ids) for c, f in zip(cut, full))
    assert all(c.targets == f.targets for c, f in zip(cut, full))


def test_retrieval_one_example_per_gold_tool_and_synthetic_for_the_rest(smollm2_tokenizer, toy_catalog):
    toolgen = tiny_toolgen(smollm2_tokenizer, toy_catalog)
    gold = ("Weather&&forecast", "Travel&&hotel search")
    query = Query(id="1", text="Weather and a hotel in Rome?", gold=gold)
    examples = retrieval_examples(toolgen, [query], synthetic_per_tool=2)
    real = [e for e in examples if e.text == query.text]
    assert [e.tool_id for e in real] == list(gold)
    for example in real:
        assert_prompt_then_code(
            example, retrieval_prompt(smollm2_tokenizer, query.text), toolgen.code_ids(example.tool_id)
        )
    synthetic = [e for e in examples if e.text != query.text]
    assert {e.tool_id for e in synthetic} == set(toy_catalog.ids) - set(gold)
    assert all(e.stage == RETRIEVAL and e.targets == list(toolgen.code_ids(e.tool_id)) for e in synthetic)
    assert len(retrieval_examples(toolgen, [query], 2, synthetic_for="all")) == len(real) + 2 * len(toy_catalog)
    assert len(retrieval_examples(toolgen, [query], 2, synthetic_for="none")) == len(real)


def test_synthetic_queries_are_deterministic_per_tool_and_use_the_documentation(toy_catalog):
    tool = toy_catalog["Finance&&stock price"]
    queries = synthetic_queries(tool, 4, seed=0)
    assert queries == synthetic_queries(tool, 4, seed=0) and len(set(queries)) == 4
    assert synthetic_queries(tool, 4, seed=1) != queries or len(queries) < 4
    assert any("stock price" in q.lower() for q in queries)
    assert all("Returns" not in q for q in queries if q.startswith(("I need to", "Can you")))


def test_agent_mask_covers_assistant_turns_only(smollm2_tokenizer, toy_catalog):
    toolgen = tiny_toolgen(smollm2_tokenizer, toy_catalog)
    steps = (
        Step("I should use forecast.", "Weather&&forecast", {"q": "Rome"}, "Sunny, 25 C"),
        Step(FINISH_THOUGHT, FINISH, {"final_answer": "Sunny."}),
    )
    example = trajectory_example(toolgen, TrainingTrajectory((("Weather in Rome?", steps),)))
    assert example.stage == AGENT
    scored = smollm2_tokenizer.decode(example.targets)
    unscored = smollm2_tokenizer.decode([t for t, m in zip(example.ids, example.mask) if not m])
    assert scored.count("Thought: ") == 2 and "Action Input: " + json.dumps({"q": "Rome"}) in scored
    assert "Sunny, 25 C" not in scored and "Weather in Rome?" not in scored
    assert "Observation: Sunny, 25 C" in unscored
    code, finish = toolgen.code_ids("Weather&&forecast")[0], toolgen.finish_token_id
    assert [t for t in example.targets if t in (code, finish)] == [code, finish]
    observation = observation_ids(smollm2_tokenizer, "Sunny, 25 C")
    start = next(i for i in range(len(example.ids)) if example.ids[i : i + len(observation)] == tuple(observation))
    assert not any(example.mask[start : start + len(observation)])


@pytest.fixture(scope="module")
def bfcl_entries():
    return load_bfcl_catalog(), load_bfcl_entries(["simple_python", "parallel", "multi_turn_base"])


def test_bfcl_single_turn_trajectory_calls_the_ground_truth_then_finishes(bfcl_entries):
    catalog, entries = bfcl_entries
    entry = next(e for e in entries if e.category == "parallel")
    trajectory = bfcl_trajectory(entry, catalog)
    ((user, steps),) = trajectory.turns
    assert user == entry.turns[0][0]["content"] and steps[-1].tool_id == FINISH
    assert len(steps) == len(entry.ground_truth) + 1
    for step, truth in zip(steps, entry.ground_truth):
        ((name, params),) = truth.items()
        assert catalog[step.tool_id].api_name.split("#")[0] == name
        assert all(step.arguments[k] == v[0] for k, v in params.items() if v[0] != "")


def test_bfcl_multi_turn_trajectory_runs_on_the_real_backend(bfcl_entries, smollm2_tokenizer):
    catalog, entries = bfcl_entries
    entry = next(e for e in entries if e.category == "multi_turn_base")
    trajectory = bfcl_trajectory(entry, catalog)
    assert len(trajectory.turns) == len(entry.ground_truth)
    calls = [s for _, steps in trajectory.turns for s in steps if s.tool_id != FINISH]
    assert len(calls) == sum(len(turn) for turn in entry.ground_truth)
    assert all("not executed" not in s.observation for s in calls)
    assert not any(s.observation.startswith("Error") for s in calls[:1])
    toolgen = tiny_toolgen(smollm2_tokenizer, ToolCatalog(catalog[t] for t in entry.pool))
    example = trajectory_example(toolgen, trajectory)
    assert example.targets.count(toolgen.finish_token_id) == len(entry.ground_truth)
