"""The retrieval harness end to end on a tiny ToolBench-format corpus: runs stored, rankings and report."""

import argparse
import json

import pytest

from core.build import RETRIEVAL_PAIRS_FILE, save_retrieval_pairs
from core.examples import Example
from core.lexical import bm25_document
from core.splits import is_test
from core.toolbench import load_toolbench_corpus
from eval import report, retrieval_eval, train_baseline
from eval.__main__ import main
from eval.retrievers import embedding_document
from eval.store import ResultsStore
from tests.helpers import tiny_toolgen, toolbench_api

# The split keeps a query by the hash of its text (core/splits.py): the first two fall in the test split.
QUERIES = [
    ("what is the weather forecast in Prague", ["Weather", "forecast"]),
    ("lyrics of a famous song please", ["Music", "lyrics"]),
    ("any storm alerts today", ["Weather", "alerts"]),
]
TEST_QUERY_IDS = ["0", "1"]


@pytest.fixture
def tiny_toolbench(tmp_path):
    apis = [
        toolbench_api(tool, name, description=description)
        for tool, name, description in [
            ("Weather", "forecast", "weather forecast for a city"),
            ("Weather", "alerts", "storm alerts"),
            ("Music", "lyrics", "song lyrics by title"),
            ("Music", "charts", "top music charts"),
            ("Finance", "quote", "stock price quote"),
            ("Finance", "fx", "currency exchange rate"),
        ]
    ]
    (tmp_path / "queries").mkdir()
    (tmp_path / "corpus.json").write_text(json.dumps(apis))
    rows = [
        {"query_id": i, "query": text, "relevant APIs": [gold], "api_list": apis[:4]}
        for i, (text, gold) in enumerate(QUERIES)
    ]
    (tmp_path / "queries" / "G9_test.json").write_text(json.dumps(rows))
    return tmp_path


def run(argv):
    parser = argparse.ArgumentParser()
    retrieval_eval.add_arguments(parser)
    return retrieval_eval.run(parser.parse_args(argv))


@pytest.mark.parametrize("setting", ["in-domain", "multi-domain"])
def test_bm25_and_toolgen_runs_are_stored_and_reported(tmp_path, tiny_toolbench, smollm2_tokenizer, capsys, setting):
    catalog = load_toolbench_corpus(tiny_toolbench / "corpus.json")
    tiny_toolgen(smollm2_tokenizer, catalog).save(tmp_path / "tg")
    db, rankings = tmp_path / "r.duckdb", tmp_path / "rank.jsonl"
    code = run(
        [
            "--corpus",
            "toolbench",
            "--data-dir",
            str(tiny_toolbench),
            "--split",
            "all",
            "--setting",
            setting,
            "--systems",
            "bm25,toolgen",
            "--model",
            str(tmp_path / "tg"),
            "--db",
            str(db),
            "--rankings-out",
            str(rankings),
            "--json",
        ]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)["toolbench:G9_test"]
    assert out["bm25"]["ndcg@1"] == 1.0 and out["bm25"]["queries"] == 3  # lexical overlap makes these easy
    assert 0.0 <= out["toolgen"]["ndcg@5"] <= 1.0 and "ndcg@1" in out["paired_vs_toolgen"]["bm25"]["metric"]
    lines = [json.loads(line) for line in rankings.read_text().splitlines()]
    assert len(lines) == 6 and {line["system"] for line in lines} == {"bm25", "toolgen"}
    first = lines[0]
    assert set(first) == {"system", "query_id", "ranked", "scores", "latency_ms"}
    assert all(len(pair) == 2 for pair in first["ranked"])
    if setting == "in-domain":  # the pool is the file's own api_list: the Finance APIs can never appear
        assert all(pair[0] != "Finance" for line in lines for pair in line["ranked"])
    with ResultsStore(db) as store:
        runs = store.runs()
        main_runs = runs[runs["dataset"] == "toolbench:G9_test"]
        assert sorted(main_runs["system"]) == ["bm25", "toolgen"] and set(runs["setting"]) == {setting}
        assert len(store.query_results(int(main_runs["id"].iloc[0]))) == 3
        # Buckets: only query 2 is a training query, so only its gold (Weather&&alerts) counts as seen.
        buckets = [("toolbench:G9_test/gold-seen", ["2"]), ("toolbench:G9_test/gold-unseen", ["0", "1"])]
        for dataset, query_ids in buckets:
            bucket = runs[runs["dataset"] == dataset]
            assert sorted(bucket["system"]) == ["bm25", "toolgen"]
            stored = store.query_results(int(bucket["id"].iloc[0]))
            assert [r.query_id for r in stored] == query_ids
    parser = argparse.ArgumentParser()
    report.add_arguments(parser)
    assert report.run(parser.parse_args(["--db", str(db)])) == 0
    table = capsys.readouterr().out
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in table.splitlines() if line.startswith("|")]
    assert ["toolbench:G9_test", setting, "all", "bm25"] in [row[:4] for row in rows]
    assert ["toolbench:G9_test/gold-unseen", setting, "all", "toolgen"] in [row[:4] for row in rows]


def test_test_split_keeps_exactly_the_held_out_queries(tiny_toolbench):
    catalog = load_toolbench_corpus(tiny_toolbench / "corpus.json")
    files = [tiny_toolbench / "queries" / "G9_test.json"]
    [test] = retrieval_eval.toolbench_sets(catalog, files, "multi-domain", "test")
    [everything] = retrieval_eval.toolbench_sets(catalog, files, "multi-domain", "all")
    assert [q.id for q in test.queries] == TEST_QUERY_IDS and test.pool is None  # not empty, not everything
    assert [q.id for q in everything.queries] == ["0", "1", "2"]
    assert [is_test(text) for text, _ in QUERIES] == [True, True, False]  # the fixture is what it claims


def test_unknown_system_is_a_clear_error(tiny_toolbench, tmp_path):
    with pytest.raises(ValueError, match="unknown system 'grep'"):
        run(
            [
                "--corpus",
                "toolbench",
                "--data-dir",
                str(tiny_toolbench),
                "--systems",
                "grep",
                "--db",
                str(tmp_path / "x.duckdb"),
            ]
        )


def test_missing_fine_tuned_baseline_names_the_training_command(tiny_toolbench, tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m eval train-baseline --kind embedding-ft --corpus toolbench"):
        run(
            [
                "--corpus",
                "toolbench",
                "--data-dir",
                str(tiny_toolbench),
                "--systems",
                "bm25,embedding-ft",
                "--ft-model",
                str(tmp_path / "missing"),
                "--db",
                str(tmp_path / "x.duckdb"),
            ]
        )
    assert not (tmp_path / "missing").exists()  # evaluation never trains


def test_embedding_ft_pairs_are_the_toolgen_retrieval_pairs(tmp_path, tiny_toolbench):
    catalog = load_toolbench_corpus(tiny_toolbench / "corpus.json")
    tool = catalog.ids[2]
    save_retrieval_pairs([Example((1, 2), (False, True), "retrieval", tool, "lyrics <b>please</b>")], tmp_path)
    assert train_baseline.toolgen_training_pairs(catalog, tmp_path) == [
        ("lyrics <b>please</b>", catalog[tool].document())
    ]
    written = train_baseline.toolgen_training_pairs(catalog, tmp_path, embedding_document("toolbench"))
    assert written == [("lyrics <b>please</b>", bm25_document(catalog[tool]))]  # the text the baseline indexes
    (tmp_path / RETRIEVAL_PAIRS_FILE).write_text(json.dumps({"query": "q", "tool": "Nope&&none"}) + "\n")
    with pytest.raises(ValueError, match="not in this catalog"):
        train_baseline.toolgen_training_pairs(catalog, tmp_path)
    with pytest.raises(FileNotFoundError, match="retrieval stage"):
        train_baseline.toolgen_training_pairs(catalog, tmp_path / "elsewhere")


@pytest.mark.slow
def test_train_baseline_embedding_ft_then_evaluate_it(tmp_path, tiny_toolbench, capsys):
    catalog = load_toolbench_corpus(tiny_toolbench / "corpus.json")
    texts = ["weather forecast for Rome", "storm alerts near me", "song lyrics please", "top music charts"]
    save_retrieval_pairs(
        [Example((1, 2), (False, True), "retrieval", tool, text) for text, tool in zip(texts, catalog.ids)],
        tmp_path / "tg",
    )
    train = [
        "train-baseline",
        "--kind",
        "embedding-ft",
        "--corpus",
        "toolbench",
        "--data-dir",
        str(tiny_toolbench),
        "--model",
        str(tmp_path / "tg"),
        "--max-pairs",
        "3",
        "--out",
        str(tmp_path / "ft"),
    ]
    assert main(train) == 0
    assert "on 3 (query, document) pairs" in capsys.readouterr().out
    assert main(train) == 2 and "already exists" in capsys.readouterr().err
    code = run(
        [
            "--corpus",
            "toolbench",
            "--data-dir",
            str(tiny_toolbench),
            "--split",
            "all",
            "--systems",
            "embedding-ft",
            "--ft-model",
            str(tmp_path / "ft"),
            "--db",
            str(tmp_path / "r.duckdb"),
            "--json",
        ]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)["toolbench:G9_test"]["embedding-ft"]
    assert out["queries"] == 3 and 0.0 <= out["ndcg@1"] <= 1.0


def test_toolgen_with_lexical_prior_is_a_system_and_the_sweep_reranks(
    tmp_path, tiny_toolbench, smollm2_tokenizer, capsys
):
    from eval import lexical_sweep

    catalog = load_toolbench_corpus(tiny_toolbench / "corpus.json")
    tiny_toolgen(smollm2_tokenizer, catalog).save(tmp_path / "tg")
    common = ["--corpus", "toolbench", "--data-dir", str(tiny_toolbench), "--model", str(tmp_path / "tg"), "--json"]
    systems = "toolgen,toolgen+bm25,bm25"
    args = ["--systems", systems, "--lexical-weight", "50", "--db", str(tmp_path / "r.duckdb")]  # the test split
    assert run(common + args) == 0
    out = json.loads(capsys.readouterr().out)["toolbench:G9_test"]
    # a weight of 50 nats makes BM25's choice win over a random tiny model's: BM25 gets both right
    assert out["toolgen+bm25"]["ndcg@1"] == out["bm25"]["ndcg@1"] == 1.0
    assert set(out["paired_vs_toolgen"]) == {"toolgen+bm25", "bm25"} and "bm25" in out["paired_vs_toolgen+bm25"]
    with ResultsStore(tmp_path / "r.duckdb") as store:
        runs = store.runs()
        config = runs[runs["system"] == "toolgen+bm25"]["config"].iloc[0]
        assert json.loads(config)["lexical_weight"] == 50

    parser = argparse.ArgumentParser()
    lexical_sweep.add_arguments(parser)
    sweep_args = common + ["--weights", "0,50", "--folds", "2", "--record", str(tmp_path / "tg")]
    assert lexical_sweep.run(parser.parse_args(sweep_args)) == 0
    result = json.loads(capsys.readouterr().out)
    sweep = result["sets"]["toolbench:G9_test"]
    assert sweep["all"]["queries"] == len(TEST_QUERY_IDS)  # the same queries as the evaluation above
    assert sweep["all"]["by_weight"]["0.0"]["ndcg@1"] == round(100 * out["toolgen"]["ndcg@1"], 1)
    assert sweep["all"]["by_weight"]["50.0"]["ndcg@1"] == sweep["all"]["by_weight"]["bm25"]["ndcg@1"] == 100.0
    assert result["weight"] == 50.0 or sweep["all"]["by_weight"]["0.0"]["ndcg@1"] == 100.0  # the smallest best
    assert len(result["cross_validated"]["weights_chosen"]) == 2
    # the recorded weight is what toolgen+bm25 uses when no --lexical-weight is given
    assert run(common + ["--systems", "toolgen+bm25", "--db", str(tmp_path / "r2.duckdb")]) == 0
    capsys.readouterr()
    with ResultsStore(tmp_path / "r2.duckdb") as store:
        assert json.loads(store.runs()["config"].iloc[0])["lexical_weight"] == 50.0


def test_several_query_files_are_also_reported_together(tiny_toolbench, tmp_path, capsys):
    (tiny_toolbench / "queries" / "G8_copy.json").write_text((tiny_toolbench / "queries" / "G9_test.json").read_text())
    argv = ["--corpus", "toolbench", "--data-dir", str(tiny_toolbench), "--split", "all", "--systems", "bm25"]
    assert run(argv + ["--db", str(tmp_path / "r.duckdb"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    together, alone = out["toolbench:all-groups"]["bm25"], out["toolbench:G9_test"]["bm25"]
    assert together["queries"] == 2 * alone["queries"] and together["ndcg@1"] == alone["ndcg@1"]
    assert (
        out["toolbench:all-groups/gold-unseen"]["bm25"]["queries"]
        == 2 * out["toolbench:G9_test/gold-unseen"]["bm25"]["queries"]
    )
    with ResultsStore(tmp_path / "r.duckdb") as store:
        assert "toolbench:all-groups" in set(store.runs()["dataset"])


def test_document_text_scores_each_text_on_the_training_queries_only(tiny_toolbench, capsys):
    from eval import document_text

    parser = argparse.ArgumentParser()
    document_text.add_arguments(parser)
    assert (
        document_text.run(parser.parse_args(["--corpus", "toolbench", "--data-dir", str(tiny_toolbench), "--json"]))
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["queries"] == len(QUERIES) - len(TEST_QUERY_IDS)  # "any storm alerts today" only
    assert set(out["texts"]) == set(document_text.VARIANTS)
    assert all(v == {"ndcg@1": 100.0, "ndcg@5": 100.0} for v in out["texts"].values())  # "storm alerts" is plain


def test_cross_validation_scores_each_fold_with_the_weight_best_on_the_others():
    from eval.lexical_sweep import BM25, best_weight, cross_validated

    def hits(*values):
        return [{"ndcg@1": v, "ndcg@5": v} for v in values]

    # queries 0, 2 (fold 0) and 1, 3 (fold 1); weight 1 is right on fold 1's queries, weight 2 on fold 0's
    per_weight = {1.0: hits(0, 1, 0, 1), 2.0: hits(1, 0, 1, 0), BM25: hits(0, 0, 0, 0)}
    assert best_weight(per_weight, [0, 2]) == 2.0 and best_weight(per_weight, range(4)) == 1.0  # tie: smaller
    report = cross_validated(per_weight, folds=2)
    assert report["weights_chosen"] == [1.0, 2.0]  # fold 0 gets fold 1's best, and so on: all wrong
    assert report["ndcg@1"] == 0.0 and report["ndcg@1 minus bm25"]["mean"] == 0.0
    with pytest.raises(ValueError, match="folds"):
        cross_validated(per_weight, folds=5)
