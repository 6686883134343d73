"""The toolbench-reference dataset (eval/agent_eval.py) and the GPT-3.5 reference trajectories it stores for the
Annotate tab (eval/reference_answers.py), on hand-made ToolBench files and a tiny model; and its size on the
real files."""

from __future__ import annotations

import argparse
import json

import pytest
from transformers import AutoTokenizer

from app.annotate import draw_pair, record_vote, trajectory_html
from core.build import load_corpus
from core.indexing import FINISH
from core.model import smollm2_dir
from core.splits import is_test, normalise
from core.tiny import tiny_llama
from core.toolbench import api_to_tool, load_toolbench_corpus, toolbench_function_name
from core.tools import CatalogError, ToolCatalog
from eval.__main__ import main
from eval.agent_eval import add_arguments, build_tasks, load_catalog
from eval.reference_answers import CUT_ARGUMENTS, REFERENCE_SYSTEM, load_reference_answers
from eval.store import ResultsStore
from tests.helpers import made_trajectory, tiny_toolgen, toolbench_api

CORPUS = [
    toolbench_api("Weather Hub", "Current Weather", required=["city"], optional=["cityId"]),
    toolbench_api("Weather Hub", "Forecast", required=["city"]),
    toolbench_api("Torrent-Search", "Get from yts", required=["searchtopic"]),
]
WEATHER, FORECAST, YTS = (api_to_tool(entry, "test", i) for i, entry in enumerate(CORPUS))
TRAINING_QUERY = "What is the weather in Paris today?"  # a training query of queries/G1.json
TEST_QUERY = "Which movies are on torrent sites about space?"
OTHER_QUERY = "Tell me the current weather in Tokyo."  # in no query file
MISSING = "unknown_for_missing_tool"  # an available tool the catalog lacks


def tool_message(name: str, arguments: dict) -> str:
    """A tool message as the reference answers record it: the repr of the call, cut to 100 characters."""
    return repr({"name": name, "arguments": json.dumps(arguments), "response": '{"error": "", "response": "ok"}'})[:100]


def answer(query: str, available: list[str], calls: list[tuple[str, dict]], final: dict | None) -> dict:
    """A reference answer: a chain of system, user, an assistant thought and tool messages (Finish last when
    `final` is given)."""
    messages = [("system", ""), ("user", query), ("assistant", "I will look it up.")]
    messages += [("tool", tool_message(name, arguments)) for name, arguments in calls]
    if final is not None:
        messages.append(("tool", tool_message("Finish", final)))
    chain: list = []
    for role, message in reversed(messages):
        chain = [{"role": role, "message": message, "next": chain}]
    return {
        "query": query,
        "available_tools": [{"name": name} for name in available + ["Finish"]],
        "answer": {
            "method": "chatgpt_CoT",
            "total_steps": len(messages),
            "final_answer": json.dumps(final) if final else "",
            "answer_details": chain,
        },
    }


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """corpus.json, queries/G1.json (one training and one test query) and reference_answers/G1.json."""
    assert not is_test(TRAINING_QUERY) and is_test(TEST_QUERY)
    root = tmp_path_factory.mktemp("toolbench")
    (root / "queries").mkdir()
    (root / "reference_answers").mkdir()
    (root / "corpus.json").write_text(json.dumps(CORPUS))
    queries = [
        {
            "query_id": "q1",
            "query": TRAINING_QUERY,
            "relevant APIs": [["Weather Hub", "Current Weather"]],
            "api_list": CORPUS[:2],
        },
        {
            "query_id": "q2",
            "query": TEST_QUERY,
            "relevant APIs": [["Torrent-Search", "Get from yts"]],
            "api_list": CORPUS[2:],
        },
    ]
    (root / "queries" / "G1.json").write_text(json.dumps(queries))
    weather, forecast, yts = (toolbench_function_name(t) for t in (WEATHER, FORECAST, YTS))
    answers = {
        # the training query, written in other case and punctuation: left out
        "q1": answer(
            TRAINING_QUERY.upper().rstrip("?"),
            [weather],
            [(weather, {"city": "Paris"})],
            {"return_type": "give_answer", "final_answer": "Sunny."},
        ),
        "r2": answer(
            OTHER_QUERY,
            [weather, forecast, MISSING],
            [
                (weather, {"city": "Tokyo", "cityid": "1"}),
                (MISSING, {}),
                (forecast, {"city": "Tokyo", "note": "x" * 80}),  # cut short in the record
                ("made_up_for_weather_hub", {}),
            ],
            {"return_type": "give_answer", "final_answer": "Sunny in Tokyo."},
        ),
        "r3": answer("Find a missing tool.", [MISSING], [(MISSING, {})], None),  # offers no catalog tool
        "r4": answer(TEST_QUERY, [yts], [], {"return_type": "give_up_and_restart"}),
    }
    (root / "reference_answers" / "G1.json").write_text(json.dumps(answers))
    return root


def dataset_args(data_dir, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(["--dataset", "toolbench-reference", "--data-dir", str(data_dir), *extra])


def tasks_of(args):
    return {task.id: task for task in build_tasks(args, load_catalog(args))}


def test_tasks_leave_out_training_queries_and_answers_without_catalog_tools(data_dir):
    tasks = tasks_of(dataset_args(data_dir))
    assert list(tasks) == ["r2", "r4"]  # q1 is a training query, r3 offers no catalog tool
    assert tasks["r2"].group == "toolbench-reference:G1" and tasks["r2"].turns == [
        (OTHER_QUERY, (WEATHER.id, FORECAST.id))
    ]
    assert list(tasks_of(dataset_args(data_dir, "--split", "all"))) == ["q1", "r2", "r4"]
    assert tasks_of(dataset_args(data_dir, "--pool", "catalog"))["r2"].turns == [(OTHER_QUERY, None)]


def test_reference_recall_counts_the_resolved_tools_gpt_called(data_dir):
    tasks = tasks_of(dataset_args(data_dir))
    score = tasks["r2"].score  # GPT-3.5 called WEATHER and FORECAST (the other two names do not resolve)
    assert score(made_trajectory([[(WEATHER.id, {"city": "Oslo"})]])) == {"reference_recall": 0.5}
    assert score(made_trajectory([[(FORECAST.id, {}), (WEATHER.id, {})]])) == {"reference_recall": 1.0}
    assert score(made_trajectory([[]])) == {"reference_recall": 0.0}
    assert tasks["r4"].score(made_trajectory([[(YTS.id, {})]])) == {}  # GPT-3.5 called nothing: no recall


def test_reference_trajectory_steps(data_dir):
    tasks = tasks_of(dataset_args(data_dir))
    reference = tasks["r2"].reference
    assert (reference.system, reference.dataset, reference.query_id, reference.query) == (
        REFERENCE_SYSTEM,
        "toolbench-reference:G1",
        "r2",
        OTHER_QUERY,
    )
    steps = reference.steps
    assert [s["kind"] for s in steps] == ["thought"] + ["action", "arguments", "observation"] * 4 + [
        "action",
        "final_answer",
    ]
    assert [s["tool_id"] for s in steps if s["kind"] == "action"] == [
        WEATHER.id,
        MISSING,
        FORECAST.id,
        "made_up_for_weather_hub",
        FINISH,
    ]
    arguments = [s for s in steps if s["kind"] == "arguments"]
    assert arguments[0]["arguments"] == {"city": "Tokyo", "cityId": "1"} and arguments[0]["problems"] == []
    assert arguments[2]["arguments"] == {} and arguments[2]["problems"] == [CUT_ARGUMENTS]
    observations = [s for s in steps if s["kind"] == "observation"]
    assert all(s["truncated"] and len(s["content"]) == 100 for s in observations)
    assert observations[0]["content"] == tool_message(
        toolbench_function_name(WEATHER), {"city": "Tokyo", "cityid": "1"}
    )
    assert steps[-1]["text"] == reference.final_answer == "Sunny in Tokyo."
    assert reference.metrics == {
        "finished": 1.0,
        "steps": 5.0,
        "calls": 4.0,
        "hallucinated": 1.0,
        "unresolved_calls": 1.0,
    }
    gave_up = tasks["r4"].reference
    assert gave_up.final_answer == "" and gave_up.metrics["finished"] == 0.0
    assert [s["kind"] for s in gave_up.steps] == ["thought", "action"]


def test_a_malformed_answer_is_named(tmp_path):
    broken = answer(OTHER_QUERY, [], [], None)
    broken["available_tools"] = "all of them"
    path = tmp_path / "G9.json"
    path.write_text(json.dumps({"r7": broken}))
    with pytest.raises(CatalogError, match=r"G9.json: entry r7: available_tools must be a list"):
        load_reference_answers(path, ToolCatalog([WEATHER]))


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory, data_dir):
    """A tiny random base model (the retrieve-read agent) and a tiny ToolGen checkpoint over the test catalog."""

    root = tmp_path_factory.mktemp("tiny")
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir())
    tiny_llama(len(tokenizer)).save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    catalog = load_toolbench_corpus(data_dir / "corpus.json")
    tiny_toolgen(tokenizer, catalog).save(root / "toolgen")
    return root


def run_cli(data_dir, tiny_models, db, systems: str, capsys) -> dict:
    code = main(
        [
            "agent",
            "--dataset",
            "toolbench-reference",
            "--data-dir",
            str(data_dir),
            "--systems",
            systems,
            "--model",
            str(tiny_models / "toolgen"),
            "--base",
            str(tiny_models / "base"),
            "--db",
            str(db),
            "--untuned-baseline",
            "--max-steps",
            "1",
            "--max-thought-tokens",
            "4",
            "--max-argument-tokens",
            "4",
            "--json",
        ]
    )
    assert code == 0
    return json.loads(capsys.readouterr().out)


def test_cli_stores_the_reference_once_and_the_annotate_tab_pairs_it(
    data_dir, tiny_models, tmp_path, capsys, one_thread
):
    db = tmp_path / "results.duckdb"
    first = run_cli(data_dir, tiny_models, db, "toolgen,retrieve-read", capsys)
    assert first[REFERENCE_SYSTEM]["tasks"] == 2 and first[REFERENCE_SYSTEM]["stored_now"] == 2
    assert first["toolgen"]["tasks"] == first["retrieve-read"]["tasks"] == 2
    assert 0 <= first["toolgen"]["reference_recall"] <= 1 and first["toolgen"]["hallucinated"] == 0
    second = run_cli(data_dir, tiny_models, db, "toolgen", capsys)
    assert second[REFERENCE_SYSTEM]["stored_now"] == 0
    with ResultsStore(db) as store:
        stored = store.trajectories()
        assert sorted((t.system, t.query_id) for t in stored if t.system == REFERENCE_SYSTEM) == [
            (REFERENCE_SYSTEM, "r2"),
            (REFERENCE_SYSTEM, "r4"),
        ]
        assert sum(t.system == "toolgen" for t in stored) == 4
        assert all(("reference_recall" in t.metrics) == (t.query_id == "r2") for t in stored if t.system == "toolgen")
        systems = {t.id: t.system for t in stored}
        pairs = store.unjudged_pairs("judge")
        # per query: toolgen x2 with retrieve-read and with GPT-3.5, retrieve-read with GPT-3.5
        assert len(pairs) == 2 * 5
        assert {frozenset((systems[a], systems[b])) for _, a, b in pairs} == {
            frozenset(("toolgen", "retrieve-read")),
            frozenset(("toolgen", REFERENCE_SYSTEM)),
            frozenset(("retrieve-read", REFERENCE_SYSTEM)),
        }
        # offered only the pairs of r2 with GPT-3.5 (r2's answer holds tool messages)
        skipped = {
            (a, b) for query_id, a, b in pairs if query_id != "r2" or REFERENCE_SYSTEM not in (systems[a], systems[b])
        }
        pair, shown = draw_pair(store, "judge", skipped)
        assert pair.query_id == "r2" and REFERENCE_SYSTEM in (pair.left_system, pair.right_system)
        reference = next(t for t in stored if t.id in (pair.left, pair.right) and t.system == REFERENCE_SYSTEM)
        assert reference.query_id == pair.query_id and shown[reference.id] == reference
        html = trajectory_html(reference, "A")
        assert REFERENCE_SYSTEM not in html and "&#x27;name&#x27;" in html  # the tool message, escaped
        assert record_vote(store, pair, "judge", "B is better") is True
        assert len(store.unjudged_pairs("judge")) == 2 * 5 - 1


def test_real_reference_answers(shared_data):
    """How many tasks the real reference answers give (printed; run with -s to see it)."""
    args = dataset_args(shared_data / "toolbench")
    catalog = load_catalog(args)
    tasks = build_tasks(args, catalog)
    training = {normalise(t) for t in load_corpus("toolbench", args.data_dir).training_texts()}
    with_recall = [t for t in tasks if t.reference and "reference_recall" in t.score(made_trajectory([[]]))]
    print(
        f"\ntoolbench-reference on {args.data_dir}: {len(tasks)} tasks ({len(with_recall)} where GPT-3.5 called "
        f"a catalog tool); --split all: {len(build_tasks(dataset_args(args.data_dir, '--split', 'all'), catalog))}"
    )
    assert tasks and all(normalise(t.turns[0][0]) not in training for t in tasks)
    assert all(t.turns[0][1] and set(t.turns[0][1]) <= set(catalog.ids) for t in tasks)
    assert len({(t.group, t.id) for t in tasks}) == len(tasks)
