"""Documentation on demand: after the Action picks a tool, the tool's documentation enters as a turn, once per
Action, before the Action Input is decoded; the agent feeds exactly the ids agent tuning trains on; pure mode is
unchanged; the mode follows the model's agent tuning unless the config says otherwise."""

import argparse

from core.agent import AgentConfig, ArgumentsEvent, Conversation, forced_input_prefix, run_to_end
from core.build import PRESETS, Corpus, _preset, add_arguments, stage_examples
from core.examples import AGENT, TrainingTrajectory, finish_step, trajectory_example
from core.indexing import FINISH
from core.model import ToolGenModel
from core.prompts import (
    ACTION,
    ACTION_INPUT,
    DOC_MAX_TOKENS,
    DOCUMENTED_ACTION_INPUT,
    THOUGHT,
    Step,
    assistant_turn_parts,
    documentation_ids,
    documentation_text,
    encode,
    end_of_turn_ids,
)
from core.tools import Tool
from tests.scripted_agent import FORECAST, LYRICS, WEATHER, RecordingExecutor, ScriptedLM, TurnScript

QUERY = "Weather in Oslo, then the forecast?"
STEPS = (
    Step("I need the weather.", WEATHER, {"q": "Oslo"}, "sunny in Oslo"),
    Step("Now the forecast.", FORECAST, {"q": "Oslo"}, "sunny in Oslo"),
    finish_step("Done.", "Sunny."),
)


def documented_model(setup, steps=STEPS, documented=True, info=None):
    """A scripted ToolGenModel writing the model's parts of `steps` (each written part is one assistant turn),
    and a list that records every sequence the model was asked to continue."""
    tokenizer, build = setup
    probe = build([[0]])
    turns = [ids for step in steps for ids, written in assistant_turn_parts(probe, step, documented) if written]
    script, seen = TurnScript(tokenizer, turns), []

    def recording(ids):
        seen.append(list(ids))
        return script(ids)

    toolgen = ToolGenModel(ScriptedLM(len(tokenizer), recording), tokenizer, probe.catalog, probe.indexing, info)
    return toolgen, seen


def count(sequence, part):
    return sum(sequence[i : i + len(part)] == part for i in range(len(sequence) - len(part) + 1))


def run_conversation(toolgen, config):
    conversation = Conversation(toolgen, RecordingExecutor(), pool=[WEATHER, FORECAST, LYRICS], config=config)
    events = list(conversation.send(QUERY))
    return conversation.context, events


def test_the_agent_feeds_exactly_the_training_sequence(setup):
    toolgen, _ = documented_model(setup)
    context, events = run_conversation(toolgen, AgentConfig(agent_docs=True))
    example = trajectory_example(toolgen, TrainingTrajectory(((QUERY, STEPS),)), documented=True)
    assert context == list(example.ids)
    assert [(e.tool_id, e.arguments) for e in events if isinstance(e, ArgumentsEvent)] == [
        (WEATHER, {"q": "Oslo"}),
        (FORECAST, {"q": "Oslo"}),
        (FINISH, {"final_answer": "Sunny."}),
    ]
    tokenizer = toolgen.tokenizer
    for tool_id in (WEATHER, FORECAST):  # once per Action, and never scored
        doc = documentation_ids(tokenizer, toolgen.catalog[tool_id])
        assert count(context, doc) == 1
        start = next(i for i in range(len(context)) if context[i : i + len(doc)] == doc)
        assert not any(example.mask[start : start + len(doc)])
    assert count(context, encode(tokenizer, "Documentation:")) == 2


def test_documentation_is_read_before_the_action_input_is_decoded(setup):
    toolgen, seen = documented_model(setup)
    run_conversation(toolgen, AgentConfig(agent_docs=True))
    tokenizer = toolgen.tokenizer
    doc = documentation_ids(tokenizer, toolgen.catalog[WEATHER])
    opening = encode(tokenizer, THOUGHT + STEPS[0].thought + ACTION) + list(toolgen.code_ids(WEATHER))
    prefix, end = forced_input_prefix(tokenizer, DOCUMENTED_ACTION_INPUT), end_of_turn_ids(tokenizer)
    # every continuation asked for after the first Action and its forced Action Input opening holds the doc once,
    # laid out as: Action code, end of turn, documentation turn, "Action Input:"
    after_action = [ids for ids in seen if count(ids, opening) == 1 and count(ids, prefix) >= 1]
    assert after_action and all(count(ids, doc) == 1 for ids in after_action)
    first_input = min(after_action, key=len)
    start = next(i for i in range(len(first_input)) if first_input[i : i + len(doc)] == doc)
    assert first_input[start - len(end) - len(opening) : start] == opening + end
    assert first_input[start + len(doc) : start + len(doc) + len(prefix)] == prefix


def test_pure_mode_is_unchanged(setup):
    toolgen, _ = documented_model(setup, documented=False)
    context, _ = run_conversation(toolgen, AgentConfig())
    tokenizer = toolgen.tokenizer
    example = trajectory_example(toolgen, TrainingTrajectory(((QUERY, STEPS),)))
    assert context == list(example.ids)
    assert count(context, encode(tokenizer, "Documentation:")) == 0
    step = STEPS[0]
    assert assistant_turn_parts(toolgen, step) == [
        (
            encode(tokenizer, THOUGHT + step.thought + ACTION)
            + list(toolgen.code_ids(step.tool_id))
            + encode(tokenizer, ACTION_INPUT + '{"q": "Oslo"}')
            + end_of_turn_ids(tokenizer),
            True,
        )
    ]


def test_the_mode_follows_the_model_unless_the_config_chooses(setup):
    toolgen, _ = documented_model(setup, info={"agent_docs": True})
    context, _ = run_conversation(toolgen, AgentConfig())
    assert context == list(trajectory_example(toolgen, TrainingTrajectory(((QUERY, STEPS),)), documented=True).ids)
    pure, _ = documented_model(setup, documented=False, info={"agent_docs": True})
    context, _ = run_conversation(pure, AgentConfig(agent_docs=False))
    assert count(context, encode(pure.tokenizer, "Documentation:")) == 0
    trace = run_to_end(toolgen, QUERY, RecordingExecutor(), pool=[WEATHER, FORECAST], config=AgentConfig())
    assert trace.finished and len(trace.calls) == 2


def test_documentation_text_is_compact_and_bounded(smollm2_tokenizer):
    tool = Tool(
        id="math&&area#abc123",
        category="bfcl",
        tool_name="math",
        api_name="area#abc123",
        description="Area of a shape.   Uses the usual formulas.",
        parameters={
            "type": "object",
            "required": ["base"],
            "properties": {
                "base": {"type": "integer", "description": "The base."},
                "unit": {"type": "string", "enum": ["cm", "m"], "default": "cm"},
                "sizes": {"type": "array", "items": {"type": "number"}},
            },
        },
    )
    assert documentation_text(tool) == (
        "area: Area of a shape. Uses the usual formulas.\n"
        "- base (integer; required): The base.\n"
        '- unit (string; optional; one of "cm", "m"; default "cm")\n'
        "- sizes (array of number; optional)"
    )
    huge = Tool(
        id="x&&y",
        category="",
        tool_name="x",
        api_name="y",
        description="word " * 500,
        parameters={
            "type": "object",
            "properties": {f"p{i}": {"type": "string", "description": "d " * 90} for i in range(40)},
        },
    )
    bare = Tool(id="a&&b", category="", tool_name="a", api_name="b", description="")
    frame = len(documentation_ids(smollm2_tokenizer, bare))  # the turn around an (almost) empty text
    assert len(documentation_ids(smollm2_tokenizer, huge)) <= frame + DOC_MAX_TOKENS


def test_the_build_option_makes_documented_agent_examples(setup):
    tokenizer, build = setup
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert _preset(parser.parse_args(["--agent-docs"])).agent_docs and not _preset(parser.parse_args([])).agent_docs
    assert _preset(parser.parse_args(["--agent-max-len", "768"])).stages[AGENT].max_len == 768
    toolgen = build([[0]])
    corpus = Corpus("toy", toolgen.catalog, [], [], trajectories=[TrainingTrajectory(((QUERY, STEPS),))])
    preset = PRESETS["tiny"]
    for documented in (False, True):
        examples = stage_examples(AGENT, toolgen, corpus, type(preset)(**{**preset.__dict__, "agent_docs": documented}))
        agent = [e for e in examples if e.text == QUERY]
        assert [e.ids for e in agent] == [
            trajectory_example(toolgen, TrainingTrajectory(((QUERY, STEPS),)), documented=documented).ids
        ]
