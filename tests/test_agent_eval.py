"""End-to-end agent evaluation (eval/agent_eval.py): scoring of hand-made trajectories, and the CLI on tiny models."""

import json

import pytest
from transformers import AutoTokenizer

from core.bfcl import function_name, load_bfcl_catalog, load_bfcl_entries, parse_call
from core.bfcl_trajectories import CONTINUE_TEXT
from core.executors.bfcl import BfclExecutor
from core.model import ToolGenModel, smollm2_dir
from core.tiny import tiny_llama
from core.toolbench import load_toolbench_corpus
from eval.__main__ import main
from eval.agent_datasets import bfcl_multi_tasks, bfcl_single_tasks, bfcl_turn_texts
from eval.agent_eval import trajectory_metrics
from eval.agent_systems import RetrieveReadSystem, documents_message
from eval.store import ResultsStore
from tests.helpers import made_trajectory, tiny_toolgen


@pytest.fixture(scope="module")
def bfcl_catalog():
    return load_bfcl_catalog()


SPLITS = ("train", "test", "all")


def _task(tasks, task_id):
    return next(t for t in tasks if t.id == task_id)


def test_bfcl_single_scoring_follows_the_checker(bfcl_catalog):
    tasks = bfcl_single_tasks(bfcl_catalog, "all", ["simple_python", "irrelevance"])
    task = _task(tasks, "simple_python_0")  # calculate_triangle_area(base=10, height=5, unit optional)
    (tool_id,) = task.turns[0][1]
    assert task.score(made_trajectory([[(tool_id, {"base": 10, "height": 5})]])) == {"correct": 1.0}
    assert task.score(made_trajectory([[(tool_id, {"base": 11, "height": 5})]])) == {"correct": 0.0}
    assert task.score(made_trajectory([[]])) == {"correct": 0.0}
    irrelevant = _task(tasks, "irrelevance_0")
    assert irrelevant.score(made_trajectory([[]])) == {"correct": 1.0}
    assert irrelevant.score(made_trajectory([[(irrelevant.turns[0][1][0], {})]])) == {"correct": 0.0}


def test_bfcl_task_splits_are_disjoint_and_cover_every_entry(bfcl_catalog):
    ids = {split: {t.id for t in bfcl_single_tasks(bfcl_catalog, split, ["simple_python"])} for split in SPLITS}
    assert ids["train"] and ids["test"] and not ids["train"] & ids["test"]
    assert ids["train"] | ids["test"] == ids["all"]
    with pytest.raises(ValueError, match="unknown split"):
        bfcl_single_tasks(bfcl_catalog, "dev", ["simple_python"])


def test_bfcl_multi_scoring_replays_ground_truth(bfcl_catalog):
    (entry,) = [e for e in load_bfcl_entries(["multi_turn_miss_func"]) if e.id == "multi_turn_miss_func_0"]
    task = _task(bfcl_multi_tasks(bfcl_catalog, "all", ["multi_turn_miss_func"]), entry.id)
    # the held-out function joins the offered tools at its turn, announced with the training text
    assert task.turns[3][0] == CONTINUE_TEXT and set(task.turns[3][1]) - set(task.turns[2][1]) == set(entry.held_out[3])
    order = BfclExecutor(entry.initial_config, entry.involved_classes).param_order
    by_name = {function_name(bfcl_catalog[t]): t for t in task.turns[-1][1]}
    gold = [
        [(by_name[name], arguments) for text in turn for name, arguments in parse_call(text, order)]
        for turn in entry.ground_truth
    ]
    assert task.score(made_trajectory(gold)) == {"correct": 1.0, "turns_passed": 1.0}
    wrong = [gold[0][:-1]] + gold[1:]  # the first turn misses its last call
    assert task.score(made_trajectory(wrong)) == {"correct": 0.0, "turns_passed": 0.0}
    stopped = made_trajectory(gold[:2])  # the conversation ended after two turns
    assert task.score(stopped) == {"correct": 0.0, "turns_passed": 2 / len(gold)}


def test_turn_texts_and_documents_message(bfcl_catalog):
    (entry,) = [e for e in load_bfcl_entries(["multi_turn_miss_func"]) if e.id == "multi_turn_miss_func_0"]
    texts = bfcl_turn_texts(entry)
    assert len(texts) == len(entry.turns) and texts[3] == CONTINUE_TEXT and texts[0].startswith("Move")
    tool = bfcl_catalog[entry.pool[0]]
    message = documents_message("Do it.", [tool], ["TwitterAPI: authenticate_twitter"])
    assert message.startswith("Do it.") and "Action name: TwitterAPI: authenticate_twitter" in message
    assert tool.document() in message


def test_trajectory_metrics_count_calls_outside_the_offered_set():
    trajectory = made_trajectory([[("a&&x", {}), ("b&&y", {})]])
    metrics = trajectory_metrics(trajectory, offered={"a&&x"})
    assert metrics["calls"] == 2 and metrics["hallucinated"] == 1 and metrics["finished"] == 1
    assert "probe_invalid" not in metrics  # no action was probed


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory, bfcl_catalog):
    """A tiny random base model directory and a tiny ToolGen checkpoint over the BFCL catalog."""

    root = tmp_path_factory.mktemp("tiny")
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir())
    base = tiny_llama(len(tokenizer))
    base.save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    tiny_toolgen(tokenizer, bfcl_catalog).save(root / "toolgen")
    return root


@pytest.mark.parametrize(
    "dataset, systems", [("bfcl-single", ["toolgen", "retrieve-read"]), ("bfcl-multi", ["toolgen"])]
)
@pytest.mark.slow
def test_cli_runs_the_systems_and_stores_trajectories(tiny_models, tmp_path, capsys, dataset, systems):
    db = tmp_path / "results.duckdb"
    code = main(
        [
            "agent",
            "--dataset",
            dataset,
            "--systems",
            ",".join(systems),
            "--model",
            str(tiny_models / "toolgen"),
            "--base",
            str(tiny_models / "base"),
            "--untuned-baseline",
            "--db",
            str(db),
            "--limit",
            "1",
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
    report = json.loads(capsys.readouterr().out)
    assert sorted(report) == sorted(systems)
    for values in report.values():
        assert values["tasks"] == 1 and values["hallucinated"] == 0 and 0 <= values["correct"] <= 1
    with ResultsStore(db) as store:
        stored = store.trajectories(dataset=dataset)
        assert sorted(t.system for t in stored) == sorted(systems)
        assert all(t.steps and "correct" in t.metrics for t in stored)
        assert set(store.metrics()["name"]) >= {"agent_correct", "agent_finished", "agent_hallucinated"}


@pytest.mark.slow
def test_cli_toolbench_on_the_simulator(tiny_models, tmp_path, capsys, shared_data):
    tokenizer = AutoTokenizer.from_pretrained(tiny_models / "base")
    catalog = load_toolbench_corpus(shared_data / "toolbench" / "corpus.json")
    tiny_toolgen(tokenizer, catalog).save(tmp_path / "tg")
    code = main(
        [
            "agent",
            "--dataset",
            "toolbench",
            "--data-dir",
            str(shared_data / "toolbench"),
            "--systems",
            "toolgen",
            "--model",
            str(tmp_path / "tg"),
            "--db",
            str(tmp_path / "r.duckdb"),
            "--limit",
            "1",
            "--max-steps",
            "2",
            "--max-thought-tokens",
            "4",
            "--max-argument-tokens",
            "4",
            "--json",
        ]
    )
    assert code == 0
    values = json.loads(capsys.readouterr().out)["toolgen"]
    assert values["tasks"] == 1 and 0 <= values["gold_recall"] <= 1 and values["hallucinated"] == 0


def test_retrieve_read_keeps_gold_tools_in_training_messages(tiny_models, bfcl_catalog):
    toolgen = ToolGenModel.load(tiny_models / "toolgen")
    semantic = ToolGenModel.from_base(bfcl_catalog, scheme="semantic", model=toolgen.model, tokenizer=toolgen.tokenizer)
    system = RetrieveReadSystem(semantic, k=3)
    pool = [t for t in bfcl_catalog.ids if t.startswith("GorillaFileSystem&&")]
    plain = system.user_turn("list the files in this folder", pool)
    assert len(plain.pool) == 3 and set(plain.pool) <= set(pool)
    gold = next(t for t in pool if t not in plain.pool)
    tuned = system.user_turn("list the files in this folder", pool, include=[gold])
    assert len(tuned.pool) == 3 and gold in tuned.pool and set(tuned.pool) - {gold} <= set(plain.pool)
    name = semantic.indexing.code(gold).removesuffix("<<end>>")
    assert f"Action name: {name}\n{bfcl_catalog[gold].document()}" in tuned.text


@pytest.mark.slow
def test_train_baseline_then_evaluate_it(tiny_models, tmp_path, capsys):
    out = tmp_path / "rr"
    evaluate = [
        "agent",
        "--dataset",
        "bfcl-single",
        "--systems",
        "toolgen,retrieve-read",
        "--model",
        str(tiny_models / "toolgen"),
        "--baseline-model",
        str(out),
        "--db",
        str(tmp_path / "r.duckdb"),
        "--limit",
        "1",
        "--max-steps",
        "1",
        "--max-thought-tokens",
        "4",
        "--max-argument-tokens",
        "4",
        "--json",
    ]
    assert main(evaluate) == 2  # no baseline yet: refused before any system runs, naming the training command
    assert "python -m eval train-baseline --kind retrieve-read --corpus bfcl" in capsys.readouterr().err
    assert not (tmp_path / "r.duckdb").exists()
    train = [
        "train-baseline",
        "--kind",
        "retrieve-read",
        "--corpus",
        "bfcl",
        "--trajectories",
        "3",
        "--base",
        str(tiny_models / "base"),
        "--out",
        str(out),
    ]
    assert main(train) == 0
    tuned = ToolGenModel.load(out)
    assert tuned.indexing.scheme == "semantic" and tuned.info["stages"] == ["agent"]
    assert main(train) == 2 and "already exists" in capsys.readouterr().err  # never overwritten
    assert main(evaluate) == 0 and json.loads(capsys.readouterr().out)["retrieve-read"]["tasks"] == 1
    with ResultsStore(tmp_path / "r.duckdb") as store:
        configs = {row.system: json.loads(row.config) for row in store.runs().itertuples()}
        assert configs["retrieve-read"]["tuned"] is True
