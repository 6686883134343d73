"""The Gradio workbench end to end: a launched app driven through gradio_client, on a tiny random ToolGen model
over BFCL's executable file-system and math tools and a temporary results store.

Covers every tab's main action, error reporting, HTML escaping, and 20 concurrent annotators voting.
"""

from __future__ import annotations

import base64
import importlib.util
import itertools
import json
import math
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from transformers import AutoTokenizer

from app import build_demo
from app.annotate import CHOICES
from app.beam import inspect_query, parse_pool
from app.chat import ChatRenderer, Conversations, md_text, respond
from app.compare import (
    ALL,
    OVERVIEW,
    SCALE,
    filter_choices,
    metrics_frame,
    run_set_key,
    run_sets,
    scale_figure,
    stored_queries,
)
from app.ratelimit import RateLimits
from app.shared import ModelUnavailable, Workbench
from core.agent import ActionEvent, ArgumentsEvent, Conversation, FinalAnswerEvent, ObservationEvent, ThoughtEvent
from core.bfcl import load_bfcl_catalog
from core.model import ToolGenModel
from core.tiny import tiny_llama
from eval.store import MetricValue, QueryResult, ResultsStore, StoredTrajectory
from tests.scripted_agent import TWO_ANSWERS, RecordingExecutor, scripted

SYSTEMS = ("toolgen", "react-gpt", "bm25-agent")
QUERIES = {"q1": "Find my notes and read them <b>now</b>."}
N_ANNOTATORS = 20
DATASET = "toolbench:G1_instruction"


@pytest.fixture(scope="module")
def executable_catalog():
    catalog = load_bfcl_catalog()
    return catalog.subset(t.id for t in catalog if t.tool_name in ("GorillaFileSystem", "MathAPI"))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, smollm2_tokenizer_dir, executable_catalog):
    tokenizer = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)
    toolgen = ToolGenModel.from_base(executable_catalog, model=tiny_llama(len(tokenizer) + 64), tokenizer=tokenizer)
    return toolgen.save(tmp_path_factory.mktemp("model") / "toolgen")


def seed(store, catalog) -> None:
    """Two retrieval runs with gold tools and CIs, and three systems' trajectories on two queries."""
    tools = catalog.ids
    for system, shift in (("toolgen", 0), ("bm25", 1)):
        results = [
            QueryResult(
                "q1", "list my files <script>x</script>", tools[shift : shift + 3], [-0.1, -1.0, -2.0], [tools[0]], 12.5
            ),
            QueryResult("q2", "what is the square root of 9", tools[5:8], [-0.3, -0.9, -1.5], [tools[6]], 9.0),
        ]
        metrics = [
            MetricValue("ndcg@1", 0.8 - shift / 4, 0.6 - shift / 4, 0.9 - shift / 4),
            MetricValue("recall@5", 0.9, 0.8, 1.0),
            MetricValue("latency_p50_ms", 10.0),
        ]
        store.add_run(system, DATASET, results, metrics, setting="in-domain", split="test", code_version="test")
    store.add_run(
        "toolgen",
        "bfcl-multi",
        metrics=[MetricValue("agent_finished", 0.5, 0.2, 0.8)],
        setting="offered-functions",
        split="test",
        code_version="test",
    )  # an agent run: metrics only

    def steps(rank: int) -> list[dict]:  # agent events as core/agent.py stores them; codes differ per system
        code = "<<GorillaFileSystem&&ls>>" if rank % 2 else "GorillaFileSystem: ls<<end>>"
        return [
            {"kind": "thought", "turn": 0, "step": 0, "text": f"thinking <i>hard</i> ({rank})"},
            {
                "kind": "action",
                "turn": 0,
                "step": 0,
                "tool_id": "GorillaFileSystem&&ls",
                "code": code,
                "log_prob": -0.1,
                "alternatives": [],
            },
            {
                "kind": "arguments",
                "turn": 0,
                "step": 0,
                "tool_id": "GorillaFileSystem&&ls",
                "arguments": {"a": rank},
                "text": "",
                "problems": [],
            },
            {
                "kind": "observation",
                "turn": 0,
                "step": 0,
                "tool_id": "GorillaFileSystem&&ls",
                "content": "<img src=x onerror=alert(1)>",
                "ok": True,
                "error": None,
                "simulated": False,
                "executed": True,
            },
            {"kind": "final_answer", "turn": 0, "step": 1, "text": f"answer {rank}"},
        ]

    store.add_trajectories(
        StoredTrajectory(system, "bfcl", query_id, text, steps(rank), final_answer=f"answer {rank}")
        for query_id, text in QUERIES.items()
        for rank, system in enumerate(SYSTEMS)
    )


@pytest.fixture(scope="module")
def app(tmp_path_factory, model_dir, executable_catalog):
    """(workbench, url) of a launched app; closed after the module."""
    workbench = Workbench(model_dir, tmp_path_factory.mktemp("db") / "workbench.duckdb")
    seed(workbench.store, executable_catalog)
    demo = build_demo(workbench, limits=RateLimits.off())  # 20 annotators from one address (tests/test_trust.py)
    demo.queue(default_concurrency_limit=4)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True)
    yield workbench, url
    demo.close()
    workbench.close()


def plotted_traces(chart: dict) -> list[dict]:
    """The traces of a gr.Plot payload, with plotly's base64 typed arrays decoded to lists."""

    def decode(value):
        if isinstance(value, dict) and "bdata" in value:
            return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).tolist()
        return {k: decode(v) for k, v in value.items()} if isinstance(value, dict) else value

    return [decode(trace) for trace in json.loads(chart["plot"])["data"]]


@pytest.fixture
def client(app):
    return Client(app[1], verbose=False)


def test_chat_streams_each_step_with_calls_alternatives_and_observations(client):
    job = client.submit("List the files in my home folder.", [], True, 2, 3, api_name="/chat")
    updates = list(job)
    cleared, history = job.result()
    assert cleared == "" and len(updates) >= 4  # the user turn, then at least thought/action/arguments/…
    assert history[0]["role"] == "user"
    calls = [m for m in history if (m.get("metadata") or {}).get("id")]
    assert calls and all(m["metadata"]["status"] == "done" for m in calls)
    assert all(m["metadata"]["title"].startswith(("🛠️", "🏁")) for m in calls)
    alternatives = [m for m in history if (m.get("metadata") or {}).get("parent_id")]
    assert {m["metadata"]["parent_id"] for m in alternatives} == {m["metadata"]["id"] for m in calls}
    observations = [
        m
        for m in history
        if (m.get("metadata") or {}).get("title", "").endswith(("Observation", "Observation (error)", "not executed"))
    ]
    tool_calls = [m for m in calls if m["metadata"]["title"].startswith("🛠️")]
    assert len(observations) == len(tool_calls)
    assert client.predict(api_name="/new_conversation") == []
    _, history = client.predict("Now create a folder called drafts.", [], True, 1, 2, api_name="/chat")
    assert history[0]["role"] == "user" and len(history) > 1  # the reset session answers again


def test_conversations_are_kept_by_key_and_the_oldest_idle_one_goes_first():
    kept = Conversations(limit=2)
    busy, idle, newer, newest = (SimpleNamespace(answering=a) for a in (True, False, False, False))
    kept.put("busy", busy)
    kept.put("idle", idle)
    kept.put("newer", newer)  # over the limit: the oldest conversation that is not answering goes
    assert kept.get("busy") is busy and kept.get("idle") is None and kept.get("newer") is newer
    kept.get("busy")  # used last: still never dropped while it answers
    kept.put("newest", newest)
    assert len(kept) == 2 and kept.get("newer") is None and kept.get("busy") is busy


def test_chat_messages_continue_one_conversation(setup):
    _, build = setup
    toolgen = scripted(build, TWO_ANSWERS)
    workbench = SimpleNamespace(toolgen=lambda: toolgen)
    conversation = Conversation(toolgen, RecordingExecutor())
    *_, (history, kept) = respond(workbench, "Weather in Oslo?", [], conversation, False, 4, 2)
    first_context = conversation.context
    assert kept is conversation and history[-1]["content"] == "✅ one"
    *_, (history, _) = respond(workbench, "Now lyrics.", history, conversation, False, 4, 2)
    assert conversation.context[: len(first_context)] == first_context  # the second message sees the first
    assert conversation.trajectory.answers == ["one", "two"] and history[-1]["content"] == "✅ two"
    assert [m["content"] for m in history if m["role"] == "user"] == [
        md_text("Weather in Oslo?"),
        md_text("Now lyrics."),
    ]
    conversation.reset()
    *_, (history, _) = respond(workbench, "Weather?", [], conversation, False, 1, 2)  # one step: no Finish
    assert "without a final answer" in history[-1]["content"]
    with pytest.raises(ValueError, match="press New conversation"):
        next(respond(workbench, "And then?", history, conversation, False, 4, 2))


def test_chat_renderer_marks_calls_pending_then_done_and_escapes_model_text():
    renderer = ChatRenderer(prefix="m1")
    renderer.add(ThoughtEvent(turn=0, step=0, text="<script>alert(1)</script> *bold*"))
    renderer.add(
        ActionEvent(
            turn=0,
            step=0,
            tool_id="GorillaFileSystem&&ls",
            code="<<GorillaFileSystem&&ls>>",
            log_prob=-0.5,
            alternatives=[
                ("GorillaFileSystem&&ls", "<<GorillaFileSystem&&ls>>", -0.5),
                ("MathAPI&&add", "<<MathAPI&&add>>", -2.0),
            ],
        )
    )
    call = renderer.messages[-2]
    assert call["metadata"]["status"] == "pending" and renderer.messages[-1]["metadata"]["parent_id"] == "m1-0-0"
    renderer.add(
        ArgumentsEvent(turn=0, step=0, tool_id="GorillaFileSystem&&ls", arguments={"a": "<b>"}, text="", problems=[])
    )
    renderer.add(
        ObservationEvent(
            turn=0,
            step=0,
            tool_id="GorillaFileSystem&&ls",
            content="<img src=x>",
            ok=True,
            error=None,
            simulated=False,
            executed=True,
        )
    )
    renderer.add(FinalAnswerEvent(turn=0, step=1, text="done <b>!</b>"))
    assert call["metadata"]["status"] == "done" and "duration" in call["metadata"]
    text = "".join(m["content"] for m in renderer.messages)
    assert "<script>" not in text and "<img" not in text and "<b>" not in text
    assert "&lt;script&gt;" in text and "&lt;img src=x&gt;" in text and renderer.answered
    assert md_text("*a* [b](c)") == r"\*a\* \[b\]\(c\)"


def test_beam_inspector_shows_steps_removed_tokens_and_ranked_docs(client, executable_catalog):
    pool = "GorillaFileSystem&&ls\n<<MathAPI&&add>>\nGorillaFileSystem&&cat"
    ranked, chart, steps, tree = client.predict("list my files", 3, 5, "custom list", None, pool, api_name="/inspect")
    assert ranked.count("<details") == 3 and "Api Description" in ranked
    assert "removed by the constraint" in steps and "best allowed tokens" in steps
    assert all(name in tree for name in ("GorillaFileSystem&amp;&amp;ls", "MathAPI&amp;&amp;add"))
    (bars,) = plotted_traces(chart)  # one bar per ranked tool, in rank order, height P(code | query)
    tools = [label.split(". ", 1)[1] for label in bars["x"]]
    assert bars["type"] == "bar" and sorted(tools) == sorted(parse_pool(executable_catalog, "custom list", custom=pool))
    assert bars["x"] == [f"{rank}. {tool}" for rank, tool in enumerate(tools, start=1)]
    log_probs = [log_prob for _, log_prob in bars["customdata"]]
    assert bars["y"] == pytest.approx([math.exp(lp) for lp in log_probs]) and log_probs == sorted(log_probs)[::-1]
    shown = [ranked.index(f"log P {lp:.3f}") for lp in log_probs]  # the ranked list shows the same scores
    assert shown == sorted(shown)


def test_beam_inspector_draws_a_prefix_tree_for_multi_token_codes(tmp_path, smollm2_tokenizer, toy_catalog):
    toolgen = ToolGenModel.from_base(
        toy_catalog, scheme="numeric", model=tiny_llama(len(smollm2_tokenizer) + 8), tokenizer=smollm2_tokenizer
    )
    workbench = Workbench(toolgen.save(tmp_path / "numeric"), tmp_path / "db.duckdb")
    try:
        ranked, _, steps, tree = inspect_query(workbench, "weather in Paris", 3, 3, "a group", "weather")
        assert ranked.count("<details") == 3 and "step 2" in steps
        assert tree.count("<ul>") >= 3  # prompt -> digit -> digit -> <<end>>
        assert all("Weather&amp;&amp;" in line for line in tree.split("<b>#")[1:])
        with pytest.raises(ValueError, match="unknown tool"):
            parse_pool(workbench.catalog, "custom list", custom="Nope&&none")
    finally:
        workbench.close()


def test_errors_show_in_the_tab_and_the_app_lives_on(client, tmp_path):
    with pytest.raises(AppError, match="the query is empty"):
        client.predict("   ", 3, 5, "all tools", None, "", api_name="/inspect")
    with pytest.raises(AppError, match="unknown tool"):
        client.predict("x", 3, 5, "custom list", None, "Nope&&nothing", api_name="/inspect")
    ranked, *_ = client.predict("still alive?", 2, 2, "all tools", None, "", api_name="/inspect")
    assert ranked.count("<details") == 2
    missing = Workbench(tmp_path / "no-model", tmp_path / "db.duckdb")
    try:
        with pytest.raises(ModelUnavailable, match="no-model"):
            inspect_query(missing, "hi", 2, 2, "all tools")
    finally:
        missing.close()


def test_retrieval_comparison_stored_live_and_metrics(app, client):
    key = run_set_key(DATASET, "in-domain", "test")
    assert [value for _, value in run_sets(app[0].store)] == [key]  # the metrics-only agent run is not offered
    assert [query_id for _, query_id in stored_queries(app[0].store, key)] == ["q1", "q2"]
    shown, columns = client.predict(key, "q1", api_name="/stored_rankings")
    assert "&lt;script&gt;" in shown and "<script>" not in shown
    assert columns.count('class="wb-col"') == 2 and columns.count('class="gold"') == 1  # only toolgen found it
    assert "1/1 gold found" in columns and "0/1 gold found" in columns and "12 ms" in columns
    shown, columns = client.predict("<b>read</b> a file", ["toolgen", "toolgen+bm25", "bm25"], 4, api_name="/rank_live")
    assert "&lt;b&gt;read" in shown and columns.count('<td class="num">') == 12 and " ms" in columns
    assert columns.count('class="wb-col"') == 3 and "wb-error" not in columns
    chart, table, csv_path = client.predict("toolbench", "G1_instruction", "in-domain", ["ndcg@1"], api_name="/metrics")
    frame = pd.read_csv(csv_path)
    assert set(frame.system) == {"toolgen", "bm25"} and "ci_low" in frame.columns
    assert frame[(frame.system == "bm25") & (frame.name == "ndcg@1")].value.item() == pytest.approx(0.55)
    bars = {trace["name"]: trace for trace in plotted_traces(chart)}  # one bar per system, 95% CI error bars
    assert set(bars) == {"toolgen", "bm25"} and all(bar["x"] == ["ndcg@1"] for bar in bars.values())
    assert bars["toolgen"]["y"] == pytest.approx([0.8]) and bars["bm25"]["y"] == pytest.approx([0.55])
    for bar in bars.values():  # seeded CIs: value - 0.2 .. value + 0.1
        assert bar["error_y"]["array"] == pytest.approx([0.1]) and bar["error_y"]["arrayminus"] == pytest.approx([0.2])


def test_the_metrics_overview_shows_whole_sets_and_their_unseen_buckets(tmp_path):
    datasets = [
        "bfcl", "bfcl/gold-seen", "bfcl/gold-unseen", "bfcl/simple_python",
        "toolbench:G1_tool", "toolbench:G1_tool/gold-unseen", "toolbench:all-groups",
        "toolbench:all-groups/gold-seen", "toolbench:all-groups/gold-unseen", "other:G9", "other:G9/gold-unseen",
    ]  # fmt: skip
    with ResultsStore(tmp_path / "r.duckdb") as store:
        for dataset in datasets:
            store.add_run("bm25", dataset, [], [MetricValue("ndcg@1", 0.5, 0.4, 0.6)], split="test", code_version="t")
        shown = set(metrics_frame(store, OVERVIEW).dataset)
        assert shown == {
            "bfcl", "bfcl/gold-unseen", "toolbench:all-groups", "toolbench:all-groups/gold-unseen",
            "other:G9", "other:G9/gold-unseen",  # a family with no pooled set shows its groups
        }  # fmt: skip
        assert set(metrics_frame(store, ALL).dataset) == set(datasets)
        assert filter_choices(store)[0][:2] == [OVERVIEW, ALL] and SCALE not in filter_choices(store)[0]


def test_the_scale_curve_draws_each_system_against_the_catalog_size(tmp_path):
    with ResultsStore(tmp_path / "r.duckdb") as store:
        store.add_run("bm25", "toolbench:all-groups", [], [MetricValue("ndcg@1", 0.6, 0.5, 0.7)], code_version="t")
        for tools, toolgen, bm25 in [(2479, 0.55, 0.54), (47020, 0.3, 0.5), (10000, 0.45, 0.52)]:
            for subset in ("", "/gold-unseen", "/gold-seen"):
                dataset = f"toolbench:all-groups@{tools}-tools{subset}"
                for system, value in [("toolgen", toolgen), ("bm25", bm25)]:
                    store.add_run(system, dataset, [], [MetricValue("ndcg@1", value, value - 0.1, value + 0.05)])
            store.add_run("bm25", f"toolbench:G1_tool@{tools}-tools", [], [MetricValue("ndcg@1", 0.1)])
        frame = metrics_frame(store, SCALE)
        assert set(frame.dataset.str.partition("/")[2]) == {"", "gold-unseen"}  # whole set and unseen bucket
        assert "@" not in "".join(metrics_frame(store, ALL).dataset)  # grown catalogs stay out of the bar charts
        assert SCALE in filter_choices(store)[0]
        lines = {(t.name, t.xaxis): t for t in scale_figure(frame, ["ndcg@1"]).data}
        assert len(lines) == 4  # two systems x (all queries, gold-unseen)
        toolgen = next(t for (name, _), t in lines.items() if name == "toolgen")
        assert list(toolgen.x) == [2479, 10000, 47020] and list(toolgen.y) == pytest.approx([0.55, 0.45, 0.3])
        assert list(toolgen.error_y.arrayminus) == pytest.approx([0.1] * 3)


def _annotate_everything(url: str, name: str) -> int:
    """One simulated annotator: next pair, vote, until nothing is left. Returns the number of votes cast."""
    client, rng, votes = Client(url, verbose=False, httpx_kwargs={"timeout": 60}), random.Random(name), 0
    while True:
        status, task, left, right = client.predict(name, api_name="/next_pair")
        if "Nothing left" in status:
            return votes
        assert "&lt;b&gt;now" in task
        assert not any(system in left + right for system in SYSTEMS)  # blind: no names, no codes
        assert "GorillaFileSystem&amp;&amp;ls" in left and "&lt;end&gt;" not in left + right
        assert "<img" not in left and "&lt;img" in left
        status, *_ = client.predict(rng.choice(list(CHOICES)), "ok", api_name="/vote")
        assert status.startswith("Vote saved.") and not any(system in status for system in SYSTEMS)
        votes += 1


@pytest.mark.slow
def test_twenty_concurrent_annotators_each_vote_once_per_pair(app, client):
    workbench, url = app
    pairs = len(QUERIES) * len(list(itertools.combinations(SYSTEMS, 2)))
    names = [f"annotator-{i}" for i in range(N_ANNOTATORS)]
    with ThreadPoolExecutor(N_ANNOTATORS) as pool:
        cast = list(pool.map(lambda name: _annotate_everything(url, name), names))
    assert cast == [pairs] * N_ANNOTATORS
    votes = workbench.store.votes()
    votes = votes[votes.annotator.isin(names)]
    assert len(votes) == N_ANNOTATORS * pairs
    assert not votes.duplicated(["annotator", "trajectory_a", "trajectory_b"]).any()
    assert (votes.groupby("annotator").size() == pairs).all()
    summary, _, ratings, win_rates, _, _ = client.predict(api_name="/leaderboard")  # still answering
    total = len(workbench.store.votes())
    assert f"{total} votes" in summary
    assert {row[0] for row in ratings["data"]} == set(SYSTEMS)
    assert sum(row[6] for row in win_rates["data"]) == total


def test_a_vote_is_stored_once_even_from_two_sessions_at_once(app):
    workbench, url = app
    *judged, (_, last_a, last_b) = workbench.store.unjudged_pairs("twin")
    for _, a, b in judged:
        workbench.store.add_vote(a, b, "twin", "tie")
    first, second = Client(url, verbose=False), Client(url, verbose=False)
    for session in (first, second):  # both sessions open the one open pair before either votes
        assert "2 of 3 pairs judged" in session.predict("twin", api_name="/next_pair")[0]
    barrier = threading.Barrier(2)

    def vote(session):
        barrier.wait()
        return session.predict("Tie", "", api_name="/vote")[0]

    with ThreadPoolExecutor(2) as pool:
        statuses = sorted(pool.map(vote, (first, second)))
    assert statuses[0].startswith("Vote saved.") and statuses[1].startswith("You had already judged this pair")
    votes = workbench.store.votes()
    twin = votes[votes.annotator == "twin"]
    assert len(twin[(twin.trajectory_a == last_a) & (twin.trajectory_b == last_b)]) == 1
    with pytest.raises(AppError, match="No pair is open"):
        first.predict("A is better", "", api_name="/vote")
    with pytest.raises(AppError, match="enter your name"):
        first.predict("  ", api_name="/next_pair")


def test_entry_point_reads_arguments_and_environment(monkeypatch):
    """The environment reaches app.py through core.settings, read when it is imported."""
    from pathlib import Path

    import core.settings

    monkeypatch.setenv("TOOLGEN_DB", "/tmp/x.duckdb")
    monkeypatch.setenv("PORT", "9999")
    try:
        importlib.reload(core.settings)
        spec = importlib.util.spec_from_file_location("workbench_main", Path(__file__).parent.parent / "app.py")
        entry = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(entry)
        args = entry.parse_args(["--model", "m"])
    finally:
        monkeypatch.undo()
        importlib.reload(core.settings)  # later imports see the real settings again
    assert (args.model, args.db, args.port) == ("m", "/tmp/x.duckdb", 9999)
