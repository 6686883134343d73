"""The ReAct agent loop: event order, Finish, step limit, recovery from bad model output, executor failures,
the exact token format fed back, per-turn pools, conversations message by message, and a run on a tiny random
model."""

import json
import time

import pytest

from core.agent import AgentConfig, ArgumentsEvent, Conversation, UserTurn, forced_input_prefix, run_agent, run_to_end
from core.executors.base import Observation
from core.indexing import FINISH
from core.model import ToolGenModel
from core.prompts import agent_prompt, encode, observation_ids, user_turn_ids
from core.tiny import tiny_llama
from tests.scripted_agent import FORECAST, LYRICS, TWO_ANSWERS, WEATHER, RecordingExecutor, scripted, turn


def kinds(events):
    return [e.kind for e in events]


CALL_THEN_FINISH = [
    ("I need the weather.", WEATHER, {"q": "Paris"}),
    ("Done.", FINISH, {"final_answer": "It is sunny in Paris."}),
]


def test_call_then_finish_emits_events_in_order(setup):
    _, build = setup
    toolgen, executor = scripted(build, CALL_THEN_FINISH), RecordingExecutor()
    events = list(run_agent(toolgen, "Weather in Paris?", executor, pool=[WEATHER, FORECAST, LYRICS]))
    assert kinds(events) == [
        "thought",
        "action",
        "arguments",
        "observation",
        "thought",
        "action",
        "arguments",
        "final_answer",
    ]
    assert [e.step for e in events] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert events[0].text == "I need the weather."
    assert events[1].tool_id == WEATHER and events[1].code == "<<Weather&&current weather>>"
    assert events[1].alternatives[0][:2] == (WEATHER, events[1].code) and len(events[1].alternatives) == 4
    assert [a[2] for a in events[1].alternatives] == sorted((a[2] for a in events[1].alternatives), reverse=True)
    assert events[2].arguments == {"q": "Paris"} and events[2].problems == []
    assert events[3].content == "sunny in Paris" and events[3].ok
    assert events[5].tool_id == FINISH and events[7].text == "It is sunny in Paris."
    assert executor.calls == [(WEATHER, {"q": "Paris"})]


def test_context_fed_back_is_exactly_the_training_format(setup):
    tokenizer, build = setup
    toolgen = scripted(build, CALL_THEN_FINISH)
    run_to_end(toolgen, "Weather in Paris?", RecordingExecutor(), pool=[WEATHER])
    expected = (
        agent_prompt(tokenizer, "Weather in Paris?")
        + turn(toolgen, *CALL_THEN_FINISH[0])
        + observation_ids(tokenizer, "sunny in Paris")
        + turn(toolgen, *CALL_THEN_FINISH[1])
    )
    seen = toolgen.model.longest  # the last thing the model read: the final turn, up to its last generated token
    assert expected[: len(seen)] == seen
    assert tokenizer.decode(seen).endswith('Action Input: {"final_answer": "It is sunny in Paris."')


def test_trajectory_is_json_serialisable_and_summarises_the_run(setup):
    _, build = setup
    trajectory = run_to_end(scripted(build, CALL_THEN_FINISH), "Weather in Paris?", RecordingExecutor(), pool=[WEATHER])
    data = json.loads(json.dumps(trajectory.to_dict()))
    assert data["finished"] and data["final_answer"] == "It is sunny in Paris." and data["query"] == "Weather in Paris?"
    assert trajectory.calls == [(0, WEATHER, {"q": "Paris"})]
    assert data["events"][1]["kind"] == "action" and data["events"][1]["alternatives"][0][0] == WEATHER


def test_step_limit_stops_a_model_that_never_finishes(setup):
    _, build = setup
    toolgen = scripted(build, [("Again.", WEATHER, {"q": "Paris"})])  # the same turn every time
    executor = RecordingExecutor()
    trajectory = run_to_end(toolgen, "Weather?", executor, pool=[WEATHER], config=AgentConfig(max_steps=3))
    assert len(executor.calls) == 3 and not trajectory.finished and trajectory.final_answer is None
    assert trajectory.events[-1].kind == "error" and "no Finish within 3 steps" in trajectory.events[-1].message


def test_unparsable_arguments_become_an_error_and_an_empty_call(setup):
    tokenizer, build = setup
    probe = build([[0]])
    garbage = (
        encode(tokenizer, "Thought: hmm\nAction: ")
        + list(probe.code_ids(WEATHER))
        + encode(tokenizer, "\nAction Input: weather please")
        + [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    )
    toolgen = build([garbage, turn(probe, "ok", FINISH, {"final_answer": "done"})])
    executor = RecordingExecutor()
    events = list(run_agent(toolgen, "Weather?", executor, pool=[WEATHER]))
    assert kinds(events) == [
        "thought",
        "action",
        "error",
        "arguments",
        "observation",
        "thought",
        "action",
        "arguments",
        "final_answer",
    ]
    assert "not a complete JSON value before the end of the turn" in events[2].message
    assert events[3].arguments == {}
    assert events[3].problems == ["missing required parameter 'q'"]
    assert executor.calls == [(WEATHER, {})]


def test_a_finish_without_a_usable_answer_still_ends_the_turn(setup):
    tokenizer, build = setup
    probe = build([[0]])
    no_json = (
        encode(tokenizer, "Thought: x\nAction: ")
        + [probe.finish_token_id]
        + encode(tokenizer, "\nAction Input: it is 42")
        + [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    )
    wrong_key = turn(probe, "x", FINISH, {"answer": 42})
    for script in (no_json, wrong_key):  # the decoder forces "final_answer"; the script then has nothing to say
        events = list(run_agent(build([script]), "Answer?", RecordingExecutor(), pool=[]))
        assert kinds(events) == ["thought", "action", "error", "arguments", "final_answer"]
        assert "'final_answer'" in events[2].message and events[3].arguments == {"final_answer": ""}


def test_a_model_that_writes_no_action_is_recovered(setup):
    tokenizer, build = setup
    silent = [tokenizer.convert_tokens_to_ids("<|im_end|>")]  # ends every turn at once
    trajectory = run_to_end(
        build([silent]), "Weather?", RecordingExecutor(), pool=[WEATHER], config=AgentConfig(max_steps=2)
    )
    assert trajectory.events[0].kind == "error" and "without an Action" in trajectory.events[0].message
    assert {e.kind for e in trajectory.events} >= {"thought", "action", "arguments"}


@pytest.mark.parametrize(
    "reply, expected",
    [
        (lambda tool, arguments: (_ for _ in ()).throw(RuntimeError("backend down")), "RuntimeError: backend down"),
        (lambda tool, arguments: time.sleep(0.5), "timed out"),
        (lambda tool, arguments: "not an observation", "not an Observation"),
        (lambda tool, arguments: Observation(content={"temp": 20}), "not text"),
    ],
)
def test_executor_failures_become_error_observations(setup, reply, expected):
    _, build = setup
    events = list(
        run_agent(
            scripted(build, CALL_THEN_FINISH),
            "Weather?",
            RecordingExecutor(reply),
            pool=[WEATHER],
            config=AgentConfig(tool_timeout_s=0.1),
        )
    )
    observation = next(e for e in events if e.kind == "observation")
    assert not observation.ok and expected in observation.error
    assert events[-1].kind == "final_answer"  # the run goes on after the failure


def test_action_is_always_in_the_pool_and_the_probe_sees_the_hallucination(setup):
    _, build = setup
    toolgen = scripted(build, [("Lyrics!", LYRICS, {"q": "x"}), ("ok", FINISH, {"final_answer": "-"})])
    events = list(
        run_agent(
            toolgen,
            "Weather?",
            RecordingExecutor(),
            pool=[WEATHER, FORECAST],
            config=AgentConfig(max_steps=2, probe_unconstrained=True),
        )
    )
    actions = [e for e in events if e.kind == "action"]
    assert actions and all(a.tool_id in (WEATHER, FORECAST, FINISH) for a in actions)
    assert actions[0].unconstrained == "<<Music&&lyrics>>" and actions[0].unconstrained_valid is False


def test_later_user_turns_can_change_the_pool(setup):
    _, build = setup
    toolgen = scripted(build, TWO_ANSWERS)
    executor = RecordingExecutor()
    trajectory = run_to_end(
        toolgen, ["Weather in Oslo?", UserTurn("Now lyrics.", pool=(LYRICS,))], executor, pool=[WEATHER]
    )
    assert trajectory.answers == ["one", "two"] and trajectory.finished
    assert trajectory.calls_by_turn() == [[(WEATHER, {"q": "Oslo"})], [(LYRICS, {"q": "song"})]]
    assert [e.turn for e in trajectory.events if e.kind == "final_answer"] == [0, 1]


def test_a_conversation_continues_the_context_of_earlier_messages(setup):
    tokenizer, build = setup
    toolgen, executor = scripted(build, TWO_ANSWERS), RecordingExecutor()
    conversation = Conversation(toolgen, executor, pool=[WEATHER])
    first = list(conversation.send("Weather in Oslo?"))
    after_first = conversation.context
    assert after_first == (
        agent_prompt(tokenizer, "Weather in Oslo?")
        + turn(toolgen, *TWO_ANSWERS[0])
        + observation_ids(tokenizer, "sunny in Oslo")
        + turn(toolgen, *TWO_ANSWERS[1])
    )
    assert first[-1].kind == "final_answer" and conversation.can_continue
    second = list(conversation.send(UserTurn("Now lyrics.", pool=(LYRICS,))))
    assert conversation.context == (
        after_first
        + user_turn_ids(tokenizer, "Now lyrics.")
        + turn(toolgen, *TWO_ANSWERS[2])
        + observation_ids(tokenizer, "sunny in song")
        + turn(toolgen, *TWO_ANSWERS[3])
    )
    assert {e.turn for e in second} == {1} and second[-1].text == "two" and conversation.pool == (LYRICS,)
    assert executor.calls == [(WEATHER, {"q": "Oslo"}), (LYRICS, {"q": "song"})]
    same_turns = run_to_end(
        scripted(build, TWO_ANSWERS),
        ["Weather in Oslo?", UserTurn("Now lyrics.", pool=(LYRICS,))],
        RecordingExecutor(),
        pool=[WEATHER],
    )
    assert conversation.trajectory == same_turns  # message by message = the multi-turn run, event for event


def test_a_conversation_resets_and_refuses_to_go_on_after_a_limit(setup):
    tokenizer, build = setup
    executor = RecordingExecutor()
    conversation = Conversation(scripted(build, TWO_ANSWERS), executor, pool=[WEATHER], config=AgentConfig(max_steps=1))
    events = list(conversation.send("Weather in Oslo?"))
    assert events[-1].kind == "error" and not conversation.can_continue
    with pytest.raises(ValueError, match="without a final answer"):
        list(conversation.send("And tomorrow?"))
    conversation.reset()
    assert conversation.context == [] and conversation.trajectory.turns == [] and executor.calls == []
    conversation.config = AgentConfig(max_steps=2)
    answering = conversation.send("Weather in Bergen?")
    next(answering)
    with pytest.raises(ValueError, match="still answering"):
        next(conversation.send("Hello?"))
    with pytest.raises(ValueError, match="still answering"):
        conversation.reset()
    events = [*answering]
    assert events[-1].kind == "final_answer" and conversation.trajectory.answers == ["one"]
    assert conversation.context[: len(agent_prompt(tokenizer, "Weather in Bergen?"))] == agent_prompt(
        tokenizer, "Weather in Bergen?"
    )  # a fresh context, not the one before the reset
    with pytest.raises(ValueError, match="empty"):
        next(conversation.send(" "))
    with pytest.raises(ValueError, match="not in the model's catalog"):
        Conversation(conversation.toolgen, executor, pool=["Nope&&nothing"])


def test_unknown_pool_tools_and_empty_queries_raise_before_running(setup):
    _, build = setup
    toolgen = scripted(build, CALL_THEN_FINISH)
    with pytest.raises(ValueError, match="not in the model's catalog"):
        list(run_agent(toolgen, "Weather?", RecordingExecutor(), pool=["Nope&&nothing"]))
    with pytest.raises(ValueError, match="empty"):
        list(run_agent(toolgen, "  ", RecordingExecutor()))
    with pytest.raises(ValueError, match="positive"):
        AgentConfig(max_steps=0)


def test_forced_input_prefix(smollm2_tokenizer):
    prefix = forced_input_prefix(smollm2_tokenizer)
    line = encode(smollm2_tokenizer, '\nAction Input: {"q": "x"}')
    assert line[: len(prefix)] == prefix and smollm2_tokenizer.decode(prefix) == "\nAction Input:"


def _check_grammar(events, pool):
    """Each step: thought, action, arguments, then observation or final answer; errors may come in between."""
    steps = {}
    for event in events:
        steps.setdefault((event.turn, event.step), []).append(event.kind)
    for sequence in steps.values():
        core = [k for k in sequence if k != "error"]
        assert core in (
            ["thought", "action", "arguments", "observation"],
            ["thought", "action", "arguments", "final_answer"],
            [],
        ), sequence
    calls = [e for e in events if isinstance(e, ArgumentsEvent) and e.tool_id != FINISH]
    assert all(c.tool_id in pool for c in calls)


@pytest.mark.parametrize("scheme", ["atomic", "semantic"])
def test_tiny_random_model_runs_within_limits(smollm2_tokenizer, toy_catalog, scheme):
    model = tiny_llama(len(smollm2_tokenizer) + len(toy_catalog) + 2)
    toolgen = ToolGenModel.from_base(toy_catalog, scheme=scheme, model=model, tokenizer=smollm2_tokenizer)
    pool = [WEATHER, FORECAST, LYRICS]
    config = AgentConfig(max_steps=2, max_thought_tokens=6, max_argument_tokens=6, probe_unconstrained=True)
    trajectory = run_to_end(toolgen, "What is the weather in Paris?", RecordingExecutor(), pool=pool, config=config)
    _check_grammar(trajectory.events, pool)
    assert len([e for e in trajectory.events if e.kind == "thought"]) <= 2
    assert trajectory.finished or trajectory.events[-1].kind == "error"
    json.dumps(trajectory.to_dict())


def test_a_finish_margin_makes_the_first_action_of_a_turn_a_call(setup):
    _, build = setup
    toolgen = scripted(build, [("Nothing fits.", FINISH, {"final_answer": "no"})])  # Finish leads by 20 nats
    for margin, first in ((0.0, FINISH), (19.0, FINISH), (21.0, WEATHER)):
        config = AgentConfig(max_steps=2, finish_margin=margin)
        events = list(run_agent(toolgen, "Weather?", RecordingExecutor(), [WEATHER], config))
        actions = [e for e in events if e.kind == "action"]
        assert actions[0].tool_id == first
        assert actions[-1].tool_id == FINISH  # later actions of the turn keep the plain ranking
        assert (
            actions[0].alternatives[0][0] == first
            and actions[0].log_prob == dict((a[0], a[2]) for a in actions[0].alternatives)[first]
        )
    toolgen.info["finish_margin"] = 21.0  # recorded on the model: the default config follows it, an explicit 0 wins
    for config, first in ((AgentConfig(max_steps=2), WEATHER), (AgentConfig(max_steps=2, finish_margin=0.0), FINISH)):
        events = list(run_agent(toolgen, "Weather?", RecordingExecutor(), [WEATHER], config))
        assert next(e for e in events if e.kind == "action").tool_id == first
