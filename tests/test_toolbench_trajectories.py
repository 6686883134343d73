"""ToolBench agent trajectories: from the GPT-3.5 reference answers (core.toolbench.load_reference_trajectories)
and synthetic ones calling the gold tools with their documented defaults (core.toolbench.synthetic_trajectories)."""

from __future__ import annotations

import json
import logging
from collections import defaultdict

import pytest

from core.build import load_corpus
from core.examples import FINISH_THOUGHT, call_thought, finish_step
from core.executors.base import validate_arguments
from core.executors.toolbench import SIMULATED_KEY, ToolBenchSimulator
from core.indexing import FINISH
from core.splits import is_test, split_queries
from core.toolbench import (
    api_to_tool,
    default_arguments,
    load_reference_trajectories,
    load_toolbench_corpus,
    load_toolbench_queries,
    synthetic_trajectories,
    toolbench_function_name,
)
from core.tools import CatalogError, Query, Tool, ToolCatalog
from tests.helpers import toolbench_api

CORPUS = [
    toolbench_api("Weather Hub", "Current Weather", required=["city"], optional=["id"]),
    toolbench_api("Weather Hub", "Forecast", required=["city"]),
    toolbench_api("Torrent-Search", "Get from yts", required=["searchtopic"]),
]
WEATHER, FORECAST = "Weather Hub&&Current Weather", "Weather Hub&&Forecast"
LONG_ANSWER = "It is sunny in Paris. " * 20


def tool_message(name: str, arguments: dict) -> str:
    """A tool message as the reference answers store it: the repr of the call record, cut to 100 characters."""
    record = {"name": name, "arguments": json.dumps(arguments, indent=2), "response": '{"error": "", "response": ""}'}
    return repr(record)[:100]


def reference_entry(query: str, calls: list[tuple[str, dict]], final_answer: str) -> dict:
    """A chatgpt_CoT reference answer: system -> user -> one tool message per call (the last one a Finish)."""
    chain: list = []
    for name, arguments in reversed(calls):
        chain = [{"role": "tool", "message": tool_message(name, arguments), "next": chain}]
    user = [{"role": "user", "message": query, "next": chain}]
    return {
        "query": query,
        "available_tools": [],
        "answer": {
            "method": "chatgpt_CoT",
            "total_steps": len(calls),
            "final_answer": final_answer,
            "answer_details": [{"role": "system", "message": "", "next": user}],
        },
    }


def give_answer(text: str) -> str:
    return json.dumps({"return_type": "give_answer", "final_answer": text}, indent=2)


FINISH_CALL = ("Finish", {"return_type": "give_answer", "final_answer": "done"})
QUERIES = {
    "1": "What is the weather in Paris?",
    "2": "Forecast for a long city name please.",
    "3": "Use a tool that does not exist.",
    "4": "I give up on this one.",
    "5": "A query of the other split.",
}


@pytest.fixture
def catalog() -> ToolCatalog:
    return ToolCatalog(api_to_tool(entry, "corpus", index) for index, entry in enumerate(CORPUS))


@pytest.fixture
def answers_file(tmp_path):
    weather = "current_weather_for_weather_hub"
    entries = {
        "1": reference_entry(
            QUERIES["1"], [(weather, {"city": "Paris", "is_id": 7}), FINISH_CALL], give_answer(LONG_ANSWER)
        ),
        "2": reference_entry(
            QUERIES["2"],
            [("forecast_for_weather_hub", {"city": "Llanfairpwllgwyngyll" * 4}), FINISH_CALL],
            give_answer("Rain."),
        ),
        "3": reference_entry(QUERIES["3"], [("teleport_for_weather_hub", {}), FINISH_CALL], give_answer("Done.")),
        "4": reference_entry(
            QUERIES["4"],
            [(weather, {"city": "Oslo"}), ("Finish", {})],
            json.dumps({"return_type": "give_up_and_restart"}),
        ),
        "5": reference_entry(QUERIES["5"], [(weather, {"city": "Lima"}), FINISH_CALL], give_answer("Warm.")),
    }
    path = tmp_path / "G1_instruction.json"
    path.write_text(json.dumps(entries), encoding="utf-8")
    return path


def given_queries(*ids: str) -> list[Query]:
    return [Query(id=i, text=QUERIES[i], gold=(WEATHER,), pool=(WEATHER, FORECAST)) for i in ids]


def offered_tools(entry: dict, by_name: dict) -> tuple:
    """The catalog ids of an answer's available tools whose function name is unambiguous."""
    return tuple(by_name[t["name"]][0] for t in entry["available_tools"] if len(by_name[t["name"]]) == 1)


def test_function_names_follow_toolbench():
    def name(tool_name, api_name):
        return toolbench_function_name(
            Tool(id="x", category="", tool_name=tool_name, api_name=api_name, description="")
        )

    assert name("Rewards as a Service", "7. Get order history") == "7_get_order_history_for_rewards_as_a_service"
    assert name("Transportistas de Argentina", "/cities/states") == "cities_states_for_transportistas_de_argentina"
    assert name("Torrent-Search", "Get from 1337.x") == "get_from_1337_x_for_torrent_search"
    assert name("Some Tool", "ID") == "is_id_for_some_tool"
    long = name("Transportistas de Argentina", "/tracking/correo_argentino/result_task/:task_id")
    assert long == "eo_argentino_result_task_task_id_for_transportistas_de_argentina"  # the last 64 characters


def test_only_complete_answers_of_the_given_queries_become_trajectories(answers_file, catalog, caplog):
    with caplog.at_level(logging.INFO, logger="core.toolbench"):
        trajectories = load_reference_trajectories(answers_file, catalog, given_queries("1", "2", "3", "4"))
    assert len(trajectories) == 1
    assert "1 of 4 reference answers to the given queries kept, 3 incomplete ones skipped" in caplog.text
    ((user, steps),) = trajectories[0].turns
    assert user == QUERIES["1"] and trajectories[0].source == "G1_instruction:1"
    call, finish = steps
    arguments = {"city": "Paris", "id": 7}  # ToolBench's "is_id" is the catalog's "id"
    expected = ToolBenchSimulator().call(catalog[WEATHER], arguments).content
    assert call.tool_id == WEATHER and call.arguments == arguments and call.observation == expected
    assert call.thought == call_thought(catalog[WEATHER])
    assert finish == finish_step(FINISH_THOUGHT, LONG_ANSWER.strip()[:300])


def test_answers_of_other_queries_are_never_read(answers_file, catalog):
    assert load_reference_trajectories(answers_file, catalog, []) == []
    same_id_other_text = [Query(id="1", text="Another question entirely.", pool=(WEATHER,))]
    assert load_reference_trajectories(answers_file, catalog, same_id_other_text) == []
    kept = load_reference_trajectories(answers_file, catalog, given_queries("5"))
    assert [t.turns[0][0] for t in kept] == [QUERIES["5"]]


def test_a_function_outside_the_query_pool_does_not_resolve(answers_file, catalog):
    only_forecast = [Query(id="1", text=QUERIES["1"], pool=(FORECAST,))]
    assert load_reference_trajectories(answers_file, catalog, only_forecast) == []


@pytest.mark.parametrize(
    "content, problem",
    [
        ([], "expected a JSON object keyed by query_id"),
        ({"9": {"query": "q"}}, "entry 9: expected {query, answer"),
        (
            {
                "9": reference_entry("q", [], give_answer("x"))
                | {"answer": {"final_answer": "", "answer_details": [{"role": "system", "message": ""}]}}
            },
            "entry 9: answer_details: every node needs role, message and next",
        ),
    ],
)
def test_malformed_files_name_the_file_and_entry(tmp_path, catalog, content, problem):
    path = tmp_path / "G1_tool.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    with pytest.raises(CatalogError, match=problem) as error:
        load_reference_trajectories(path, catalog, [])
    assert str(path) in str(error.value)


def test_a_tool_message_that_is_no_call_record_is_an_error(tmp_path, catalog):
    entry = reference_entry(QUERIES["1"], [FINISH_CALL], give_answer("x"))
    entry["answer"]["answer_details"][0]["next"][0]["next"][0]["message"] = "Finish!"
    path = tmp_path / "G1_tool.json"
    path.write_text(json.dumps({"1": entry}), encoding="utf-8")
    with pytest.raises(CatalogError, match="entry 1: tool message is not a"):
        load_reference_trajectories(path, catalog, given_queries("1"))


def test_the_toolbench_build_corpus_gets_training_trajectories_only(tmp_path):
    texts = [f"What is the weather in city number {n}?" for n in range(40)]
    train = next(t for t in texts if not is_test(t))
    test = next(t for t in texts if is_test(t))
    rows = [
        {"query_id": i, "query": text, "relevant APIs": [["Weather Hub", "Current Weather"]], "api_list": CORPUS[:2]}
        for i, text in ((1, train), (2, test))
    ]
    (tmp_path / "queries").mkdir()
    (tmp_path / "corpus.json").write_text(json.dumps(CORPUS), encoding="utf-8")
    (tmp_path / "queries" / "G1_tool.json").write_text(json.dumps(rows), encoding="utf-8")
    assert load_corpus("toolbench", tmp_path).trajectories == []  # no reference_answers/, no default for "city"
    call = ("current_weather_for_weather_hub", {"city": "Rome"})
    answers = {
        str(i): reference_entry(text, [call, FINISH_CALL], give_answer("Sunny.")) for i, text in ((1, train), (2, test))
    }
    (tmp_path / "reference_answers").mkdir()
    (tmp_path / "reference_answers" / "G1_tool.json").write_text(json.dumps(answers), encoding="utf-8")
    corpus = load_corpus("toolbench", tmp_path)
    assert [t.turns[0][0] for t in corpus.trajectories] == [train]
    assert train in corpus.training_texts() and test not in corpus.training_texts()


def test_real_reference_answers(shared_data):
    data = shared_data / "toolbench"
    catalog = load_toolbench_corpus(data / "corpus.json")
    files = sorted((data / "queries").glob("*.json"))
    split = split_queries(q for path in files for q in load_toolbench_queries(path, catalog))
    train_ids = {(q.source.split(":")[1], q.id) for q in split.train}
    kept = [
        t
        for path in files
        for t in load_reference_trajectories(
            data / "reference_answers" / path.name, catalog, [q for q in split.train if q.source.endswith(path.stem)]
        )
    ]
    print(f"\n{len(kept)} training trajectories from {len(split.train)} training queries")
    for trajectory in kept:
        assert tuple(trajectory.source.split(":")) in train_ids and not is_test(trajectory.turns[0][0])

    # Every answer read as if its query were offered (no training here): the parsing works on the real format.
    by_name = defaultdict(list)
    for tool in catalog:
        by_name[toolbench_function_name(tool)].append(tool.id)
    everything = []
    for path in files:
        answers = json.loads((data / "reference_answers" / path.name).read_text(encoding="utf-8"))
        queries = [
            Query(id=key, text=entry["query"], pool=offered_tools(entry, by_name)) for key, entry in answers.items()
        ]
        everything += load_reference_trajectories(data / "reference_answers" / path.name, catalog, queries)
    assert everything, "no reference answer is complete"
    for trajectory in everything:
        ((_, steps),) = trajectory.turns
        assert steps[-1].tool_id == FINISH and 0 < len(steps[-1].arguments["final_answer"]) <= 300
        assert all(step.tool_id in catalog and step.observation for step in steps[:-1])


# ---------------------------------------------------------------- synthetic trajectories

DEFAULTS_CORPUS = [
    toolbench_api(
        "Weather Hub",
        "Current Weather",
        required=["city"],
        optional=["units"],
        defaults={"city": "Paris", "units": "metric"},
    ),
    toolbench_api(
        "Weather Hub",
        "Forecast",
        required=["city", "days", "hourly"],
        defaults={"city": "Oslo", "days": "3", "hourly": "true"},
        types={"days": "NUMBER", "hourly": "BOOLEAN"},
    ),
    toolbench_api(
        "Weather Hub", "Alerts", required=["region", "level"], defaults={"region": "EU"}
    ),  # "level": no default
    toolbench_api(
        "Weather Hub", "History", required=["days"], defaults={"days": "last week"}, types={"days": "NUMBER"}
    ),
    toolbench_api("Weather Hub", "Status"),  # no parameter at all
]
ALERTS, HISTORY, STATUS = "Weather Hub&&Alerts", "Weather Hub&&History", "Weather Hub&&Status"


@pytest.fixture
def defaults_catalog() -> ToolCatalog:
    return ToolCatalog(api_to_tool(entry, "corpus", index) for index, entry in enumerate(DEFAULTS_CORPUS))


def synthetic_query(query_id: str, *gold: str) -> Query:
    return Query(id=query_id, text=f"Question {query_id} about the weather.", gold=gold, source="toolbench:G1_tool")


def test_default_arguments_fill_required_parameters_only(defaults_catalog):
    assert defaults_catalog[WEATHER].parameters["properties"]["city"]["default"] == "Paris"  # kept by api_to_tool
    assert default_arguments(defaults_catalog[WEATHER]) == {"city": "Paris"}  # optional "units" left out
    assert default_arguments(defaults_catalog[FORECAST]) == {"city": "Oslo", "days": 3, "hourly": True}
    assert default_arguments(defaults_catalog[ALERTS]) is None
    assert default_arguments(defaults_catalog[HISTORY]) == {"days": "last week"}  # not a number: kept as written
    assert default_arguments(defaults_catalog[STATUS]) == {}


def test_a_synthetic_trajectory_calls_the_gold_tools_with_their_defaults(defaults_catalog):
    query = synthetic_query("7", FORECAST, WEATHER, STATUS)
    (trajectory,) = synthetic_trajectories([query], defaults_catalog, max_answer_chars=1000)
    ((user, steps),) = trajectory.turns
    assert user == query.text and trajectory.source == "synthetic:toolbench:G1_tool:7"
    *calls, finish = steps
    assert [s.tool_id for s in calls] == [FORECAST, WEATHER, STATUS]
    assert [s.arguments for s in calls] == [{"city": "Oslo", "days": 3, "hourly": True}, {"city": "Paris"}, {}]
    for step in calls:
        tool = defaults_catalog[step.tool_id]
        assert step.thought == call_thought(tool) and validate_arguments(tool, step.arguments) == []
        assert step.observation == ToolBenchSimulator().call(tool, step.arguments).content
        assert json.loads(step.observation)[SIMULATED_KEY] is True
    assert finish.tool_id == FINISH and finish.thought == FINISH_THOUGHT and finish.observation == ""
    answer = finish.arguments["final_answer"]
    assert answer.startswith("Results: Forecast: {") and "; Current Weather: {" in answer and "; Status: {" in answer
    assert SIMULATED_KEY not in answer
    body = json.dumps({k: v for k, v in json.loads(calls[0].observation).items() if k != SIMULATED_KEY})
    assert answer.split("; Current Weather: ")[0] == f"Results: Forecast: {body[:100]}"


def test_the_final_answer_is_cut_to_max_answer_chars(defaults_catalog):
    query = synthetic_query("7", FORECAST, WEATHER, STATUS)
    (long,) = synthetic_trajectories([query], defaults_catalog, max_answer_chars=1000)
    (short,) = synthetic_trajectories([query], defaults_catalog, max_answer_chars=40)
    long_answer, short_answer = (t.turns[0][1][-1].arguments["final_answer"] for t in (long, short))
    assert len(long_answer) > 40 and short_answer == long_answer[:40]


def test_queries_a_default_cannot_serve_are_skipped(defaults_catalog, caplog):
    queries = [
        synthetic_query("1", WEATHER, ALERTS),  # "level" of Alerts has no default: the whole query goes
        synthetic_query("2", HISTORY),  # "last week" is no number: the call would be invalid
        synthetic_query("3"),  # no gold tool
        synthetic_query("4", WEATHER),
    ]
    with caplog.at_level(logging.INFO, logger="core.toolbench"):
        kept = synthetic_trajectories(queries, defaults_catalog)
    assert [t.source for t in kept] == ["synthetic:toolbench:G1_tool:4"]
    assert "1 queries kept, 3 skipped" in caplog.text


def test_synthetic_trajectories_are_deterministic(defaults_catalog):
    queries = [synthetic_query(str(n), FORECAST, WEATHER) for n in range(3)]
    assert synthetic_trajectories(queries, defaults_catalog) == synthetic_trajectories(queries, defaults_catalog)


def test_a_gold_tool_outside_the_catalog_is_an_error(defaults_catalog):
    with pytest.raises(CatalogError, match="toolbench:G1_tool: entry 9: gold tool 'Nope&&Nothing' is not in"):
        synthetic_trajectories([synthetic_query("9", "Nope&&Nothing")], defaults_catalog)


def test_the_toolbench_build_adds_synthetic_trajectories_for_training_queries_only(tmp_path):
    texts = [f"What is the forecast for city number {n}?" for n in range(40)]
    train = [t for t in texts if not is_test(t)][:2]
    test = next(t for t in texts if is_test(t))
    rows = [
        {
            "query_id": i,
            "query": text,
            "relevant APIs": [["Weather Hub", "Current Weather"]],
            "api_list": DEFAULTS_CORPUS[:1],
        }
        for i, text in enumerate(train + [test])
    ]
    (tmp_path / "queries").mkdir()
    (tmp_path / "corpus.json").write_text(json.dumps(DEFAULTS_CORPUS), encoding="utf-8")
    (tmp_path / "queries" / "G1_tool.json").write_text(json.dumps(rows), encoding="utf-8")
    answers = {
        "0": reference_entry(
            train[0], [("current_weather_for_weather_hub", {"city": "Rome"}), FINISH_CALL], give_answer("Sunny.")
        )
    }
    (tmp_path / "reference_answers").mkdir()
    (tmp_path / "reference_answers" / "G1_tool.json").write_text(json.dumps(answers), encoding="utf-8")
    corpus = load_corpus("toolbench", tmp_path)
    assert [(t.source, t.turns[0][0]) for t in corpus.trajectories] == [
        ("G1_tool:0", train[0]),
        ("synthetic:toolbench:G1_tool:1", train[1]),
    ]
    assert test not in corpus.training_texts()


def test_real_synthetic_trajectories(shared_data):
    data = shared_data / "toolbench"
    catalog = load_toolbench_corpus(data / "corpus.json")
    files = sorted((data / "queries").glob("*.json"))
    split = split_queries(q for path in files for q in load_toolbench_queries(path, catalog))
    kept = synthetic_trajectories(split.train, catalog)
    calls = [step for t in kept for step in t.turns[0][1][:-1]]
    print(
        f"\n{len(kept)} of {len(split.train)} training queries get a synthetic trajectory "
        f"({len(split.train) - len(kept)} skipped), {len(calls)} tool calls"
    )
    assert len(kept) > len(split.train) // 2
    train_texts = {q.text for q in split.train}
    for trajectory in kept:
        ((user, steps),) = trajectory.turns
        assert user in train_texts and not is_test(user)
        assert steps[-1].tool_id == FINISH and 0 < len(steps[-1].arguments["final_answer"]) <= 300
    for step in calls:
        assert validate_arguments(catalog[step.tool_id], step.arguments) == []
        assert not step.observation.startswith("Error:")
