"""Agent trajectories from the ToolBench GPT-3.5 reference answers (core.toolbench.load_reference_trajectories)."""
from __future__ import annotations

import json
import logging
from collections import defaultdict

import pytest

from core.data import FINISH_THOUGHT, call_thought, finish_step
from core.executors.toolbench import ToolBenchSimulator
from core.indexing import FINISH
from core.splits import is_test, split_queries
from core.tools import CatalogError, Query, Tool, ToolCatalog
from core.toolbench import (load_reference_trajectories, load_toolbench_corpus, load_toolbench_queries,
                            toolbench_function_name)


def api(tool_name: str, api_name: str, required=(), optional=()) -> dict:
    """A ToolBench `api_list` entry."""
    param = lambda name: {"name": name, "type": "STRING", "description": "", "default": ""}  # noqa: E731
    return {"category_name": "Test", "tool_name": tool_name, "api_name": api_name, "api_description": "Test API.",
            "required_parameters": [param(p) for p in required], "optional_parameters": [param(p) for p in optional],
            "method": "GET", "template_response": {"city": "str", "temperature": "float"}}


CORPUS = [api("Weather Hub", "Current Weather", required=["city"], optional=["id"]),
          api("Weather Hub", "Forecast", required=["city"]),
          api("Torrent-Search", "Get from yts", required=["searchtopic"])]
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
    return {"query": query, "available_tools": [],
            "answer": {"method": "chatgpt_CoT", "total_steps": len(calls), "final_answer": final_answer,
                       "answer_details": [{"role": "system", "message": "", "next": user}]}}


def give_answer(text: str) -> str:
    return json.dumps({"return_type": "give_answer", "final_answer": text}, indent=2)


FINISH_CALL = ("Finish", {"return_type": "give_answer", "final_answer": "done"})
QUERIES = {"1": "What is the weather in Paris?", "2": "Forecast for a long city name please.",
           "3": "Use a tool that does not exist.", "4": "I give up on this one.", "5": "A query of the other split."}


@pytest.fixture
def catalog() -> ToolCatalog:
    from core.toolbench import api_to_tool

    return ToolCatalog(api_to_tool(entry, "corpus", index) for index, entry in enumerate(CORPUS))


@pytest.fixture
def answers_file(tmp_path):
    weather = "current_weather_for_weather_hub"
    entries = {
        "1": reference_entry(QUERIES["1"], [(weather, {"city": "Paris", "is_id": 7}), FINISH_CALL],
                             give_answer(LONG_ANSWER)),
        "2": reference_entry(QUERIES["2"], [("forecast_for_weather_hub", {"city": "Llanfairpwllgwyngyll" * 4}),
                                            FINISH_CALL], give_answer("Rain.")),
        "3": reference_entry(QUERIES["3"], [("teleport_for_weather_hub", {}), FINISH_CALL], give_answer("Done.")),
        "4": reference_entry(QUERIES["4"], [(weather, {"city": "Oslo"}), ("Finish", {})],
                             json.dumps({"return_type": "give_up_and_restart"})),
        "5": reference_entry(QUERIES["5"], [(weather, {"city": "Lima"}), FINISH_CALL], give_answer("Warm.")),
    }
    path = tmp_path / "G1_instruction.json"
    path.write_text(json.dumps(entries), encoding="utf-8")
    return path


def given_queries(*ids: str) -> list[Query]:
    return [Query(id=i, text=QUERIES[i], gold=(WEATHER,), pool=(WEATHER, FORECAST)) for i in ids]


def test_function_names_follow_toolbench():
    def name(tool_name, api_name):
        return toolbench_function_name(Tool(id="x", category="", tool_name=tool_name, api_name=api_name,
                                            description=""))

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
    (user, steps), = trajectories[0].turns
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


@pytest.mark.parametrize("content, problem", [
    ([], "expected a JSON object keyed by query_id"),
    ({"9": {"query": "q"}}, "entry 9: expected {query, answer"),
    ({"9": reference_entry("q", [], give_answer("x")) | {"answer": {"final_answer": "", "answer_details": [
        {"role": "system", "message": ""}]}}}, "entry 9: answer_details: every node needs role, message and next"),
])
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
    from core.build import load_corpus

    texts = [f"What is the weather in city number {n}?" for n in range(40)]
    train = next(t for t in texts if not is_test(t))
    test = next(t for t in texts if is_test(t))
    rows = [{"query_id": i, "query": text, "relevant APIs": [["Weather Hub", "Current Weather"]],
             "api_list": CORPUS[:2]} for i, text in ((1, train), (2, test))]
    (tmp_path / "queries").mkdir()
    (tmp_path / "corpus.json").write_text(json.dumps(CORPUS), encoding="utf-8")
    (tmp_path / "queries" / "G1_tool.json").write_text(json.dumps(rows), encoding="utf-8")
    assert load_corpus("toolbench", tmp_path).trajectories == []  # no reference_answers/ folder
    call = ("current_weather_for_weather_hub", {"city": "Rome"})
    answers = {str(i): reference_entry(text, [call, FINISH_CALL], give_answer("Sunny."))
               for i, text in ((1, train), (2, test))}
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
    kept = [t for path in files for t in load_reference_trajectories(
        data / "reference_answers" / path.name, catalog, [q for q in split.train if q.source.endswith(path.stem)])]
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
        offered = lambda entry: tuple(by_name[t["name"]][0] for t in entry["available_tools"]  # noqa: E731
                                      if len(by_name[t["name"]]) == 1)
        queries = [Query(id=key, text=entry["query"], pool=offered(entry)) for key, entry in answers.items()]
        everything += load_reference_trajectories(data / "reference_answers" / path.name, catalog, queries)
    assert everything, "no reference answer is complete"
    for trajectory in everything:
        (_, steps), = trajectory.turns
        assert steps[-1].tool_id == FINISH and 0 < len(steps[-1].arguments["final_answer"]) <= 300
        assert all(step.tool_id in catalog and step.observation for step in steps[:-1])
