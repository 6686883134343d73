"""Catalogs grown with names-only tools (the scale curve) and builds holding tools out (the add-tools benchmark),
end to end on a tiny preset over a ToolBench-format corpus of 12 APIs."""

import json

import pytest

from core.__main__ import main as core_main
from core.build import PRESETS, Corpus, stage_examples, without_tools
from core.examples import MEMORIZATION, RETRIEVAL
from core.model import ToolGenModel
from core.tools import Query
from core.vocab import NAMES_ONLY, grown_catalog
from eval.__main__ import main as eval_main
from eval.bench_add_tools import choose_held_out
from eval.store import ResultsStore
from tests.helpers import tiny_toolgen, toolbench_api

FAMILIES = {
    "Weather": ["forecast", "storm alerts", "air quality"],
    "Music": ["lyrics", "top charts", "artist info"],
    "Finance": ["stock quote", "exchange rate", "market news"],
    "Travel": ["flight search", "hotel search", "train times"],
}
CITIES = ["Prague", "Lima", "Oslo", "Quito", "Accra"]


@pytest.fixture
def toolbench_dir(tmp_path):
    """corpus.json with 12 APIs, one query file naming each API in five queries, and a token list of 30 tools
    (the 12 APIs, 17 more, Finish)."""
    data = tmp_path / "toolbench"
    (data / "queries").mkdir(parents=True)
    apis = [
        toolbench_api(f, a, description=f"{a} from the {f} service") for f, names in FAMILIES.items() for a in names
    ]
    (data / "corpus.json").write_text(json.dumps(apis))
    rows = [
        {"query_id": f"{a['api_name']}-{city}", "query": f"{a['api_name']} for {city} please"}
        | {"relevant APIs": [[a["tool_name"], a["api_name"]]], "api_list": [a]}
        for a in apis
        for city in CITIES
    ]
    (data / "queries" / "G1_tiny.json").write_text(json.dumps(rows))
    tokens = [f"<<{a['tool_name']}&&{a['api_name']}>>" for a in apis] + [f"<<Extra{i}&&call {i}>>" for i in range(17)]
    (data / "tokens.txt").write_text("\n".join(tokens + ["<<Finish>>"]) + "\n")
    return data


def test_grown_catalogs_are_nested_and_their_extra_tools_names_only(toolbench_dir):
    from core.toolbench import load_toolbench_corpus

    catalog = load_toolbench_corpus(toolbench_dir / "corpus.json")
    small, large = (grown_catalog(catalog, n, toolbench_dir / "tokens.txt") for n in (20, 29))
    assert (len(small), len(large)) == (20, 29)
    assert small.ids[:12] == catalog.ids and set(small.ids) <= set(large.ids)
    extra = [large.get(t) for t in large.ids[12:]]
    assert all(t.source == NAMES_ONLY and t.description == "" for t in extra)
    assert grown_catalog(catalog, 12, toolbench_dir / "tokens.txt").ids == catalog.ids
    for size in (11, 30):
        with pytest.raises(ValueError, match="between 12 and 29"):
            grown_catalog(catalog, size, toolbench_dir / "tokens.txt")


def test_names_only_tools_are_memorized_but_no_query_names_them(toolbench_dir, smollm2_tokenizer):
    from core.toolbench import load_toolbench_corpus

    catalog = grown_catalog(load_toolbench_corpus(toolbench_dir / "corpus.json"), 20, toolbench_dir / "tokens.txt")
    toolgen = tiny_toolgen(smollm2_tokenizer, catalog)
    corpus = Corpus("toolbench", catalog, [Query("q", "forecast for Rome", ("Weather&&forecast",))], [])
    preset = PRESETS["tiny"]
    names_only = {t.id for t in catalog if t.source == NAMES_ONLY}
    assert {e.tool_id for e in stage_examples(MEMORIZATION, toolgen, corpus, preset)} == set(catalog.ids)
    retrieval = {e.tool_id for e in stage_examples(RETRIEVAL, toolgen, corpus, preset)}
    assert retrieval == set(catalog.ids) - names_only  # synthetic queries for every documented tool, none for these


def test_a_build_without_some_tools_drops_them_and_every_query_naming_them(toolbench_dir):
    from core.build import load_corpus

    corpus = load_corpus("toolbench", toolbench_dir)
    held_out = ["Music&&lyrics", "Music&&top charts"]
    smaller = without_tools(corpus, held_out)
    assert set(smaller.catalog.ids) == set(corpus.catalog.ids) - set(held_out)
    assert all(not set(q.gold) & set(held_out) for q in smaller.train + smaller.test)
    assert len(smaller.train) == len(corpus.train) - sum(bool(set(q.gold) & set(held_out)) for q in corpus.train)
    with pytest.raises(ValueError, match="not in the toolbench catalog"):
        without_tools(corpus, ["Music&&no such api"])


def test_held_out_tools_are_whole_families_named_by_test_queries():
    ids = [f"{f}&&{a}" for f, names in FAMILIES.items() for a in names]
    chosen = choose_held_out(ids, ["Music&&lyrics", "Travel&&hotel search"], 0.3, seed=0)
    families = {t.split("&&")[0] for t in chosen}
    assert families <= {"Music", "Travel"} and len(chosen) == 3 * len(families) >= 0.3 * len(ids)
    assert choose_held_out(ids, ["Music&&lyrics", "Travel&&hotel search"], 0.3, seed=0) == chosen
    with pytest.raises(ValueError, match="between 0 and 1"):
        choose_held_out(ids, ids, 1.5, seed=0)


@pytest.mark.slow
def test_the_scale_command_builds_and_evaluates_each_catalog_size(tmp_path, toolbench_dir, capsys):
    db = tmp_path / "r.duckdb"
    argv = ["scale", "--sizes", "12,20", "--preset", "tiny", "--reuse", "", "--systems", "bm25"]
    argv += ["--work", str(tmp_path / "scale"), "--db", str(db), "--data-dir", str(toolbench_dir)]
    assert eval_main([*argv, "--vocab", str(toolbench_dir / "tokens.txt")]) == 0
    curve = json.loads(capsys.readouterr().out)["sizes"]
    assert [(s["tools"], s["names_only"]) for s in curve] == [(12, 0), (20, 8)]
    for size in curve:
        assert set(size["quality"]["all"]) == {"toolgen", "bm25"}
        assert all(0 <= v["ndcg@1"] <= 100 for v in size["quality"]["all"].values())
        assert size["toolgen_latency_ms"]["p50"] > 0 and size["toolgen_eval_peak_rss_mb"] > 0
        assert (
            size["build_wall_s"] > 0
            and size["build_peak_rss_mb"] > 0
            and set(size["train_s"])
            == {
                MEMORIZATION,
                RETRIEVAL,
            }
        )
    assert curve[1]["checkpoint_mb"] > curve[0]["checkpoint_mb"]  # eight more rows
    with ResultsStore(db) as store:
        datasets = set(store.runs()["dataset"])
    assert {"toolbench:G1_tiny@12-tools", "toolbench:G1_tiny@20-tools"} <= datasets
    model = tmp_path / "scale" / "toolbench-20"
    assert (
        eval_main(["retrieval", "--corpus", "toolbench", "--data-dir", str(toolbench_dir), "--model", str(model)]) == 2
    )
    assert "holds 20 tools, the evaluation's catalog 12" in capsys.readouterr().err


@pytest.mark.slow
def test_the_add_tools_benchmark_holds_tools_out_adds_them_and_compares(tmp_path, toolbench_dir, capsys):
    full = tmp_path / "full"
    build = ["build", "--corpus", "toolbench", "--preset", "tiny", "--data-dir", str(toolbench_dir)]
    assert core_main([*build, "--stages", "memorization,retrieval", "--out", str(full)]) == 0
    capsys.readouterr()
    argv = ["add-tools-bench", "--full", str(full), "--work", str(tmp_path / "bench"), "--preset", "tiny"]
    assert eval_main([*argv, "--data-dir", str(toolbench_dir), "--fraction", "0.2"]) == 0
    record = json.loads(capsys.readouterr().out)  # the build's and add-tools' reports go to the subprocesses' stdout
    assert record["held_out"]["apis"] % 3 == 0 and record["held_out"]["apis"] >= 0.2 * 12
    held_out = (tmp_path / "bench" / "held_out.txt").read_text().split("\n")[:-1]
    assert ToolGenModel.load(tmp_path / "bench" / "without").info["held_out_tools"] == held_out
    added = ToolGenModel.load(tmp_path / "bench" / "added")
    assert set(added.catalog.ids) == set(ToolGenModel.load(full).catalog.ids)
    assert record["queries"]["added-tools"] > 0 and record["queries"]["old-tools"] > 0
    assert record["queries"]["old-tools-train"] > 0
    for comparison in (record["added-tools"], *record["old-tools"].values(), *record["old-tools-train"].values()):
        assert set(comparison) == {"ndcg@1", "ndcg@5"}
        assert all(len(c["ci"]) == 2 and 0 <= c["p"] <= 1 for c in comparison.values())
    stages = added.info["reports"]["add-tools"]  # training only the new rows of a tiny model can take < 0.05 s
    assert record["training_s"]["add_tools"] == round(sum(r["seconds"] for r in stages.values()), 1)
    assert set(stages) == {"memorization", "retrieval"} and record["wall_s"]["build_without"] > 0
    assert record["peak_rss_mb"]["add_tools"] > 0 and (tmp_path / "bench" / "added.json").exists()
