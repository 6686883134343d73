"""Retrieval evaluation: every system ranks the same queries over the same pool; metrics, CIs, latency.

`python -m eval retrieval --corpus toolbench|bfcl [--data-dir DIR] [--queries FILE ...]
 [--setting in-domain|multi-domain] --systems toolgen,bm25,embedding,embedding-ft [--model DIR] [--ft-model DIR]
 [--db FILE] [--rankings-out FILE.jsonl] [--json]`

Settings (ToolBench): `in-domain` ranks among the APIs offered by the query file itself (the union of its
queries' `api_list`), `multi-domain` among the whole corpus. BFCL ranks among all BFCL functions.
Splits: for the visible query files and BFCL, `--split test` (default) keeps the held-out test queries of
`core.splits`; `--split all` keeps every query (for query files never used in training).
With several query files, their queries together are reported too, as the set `toolbench:all-groups` (each query
ranked as in its own file's set, its id prefixed with the file's name; paired tests over all of them).
Every set is also reported in subsets, each stored as a run set of its own (`<set>/<subset>`): `gold-seen` and
`gold-unseen` (whether any gold tool of the query is gold in some *training* query of the corpus: tools a model has
only read about fall in the second), and for BFCL each category (`bfcl/simple_python`, `bfcl/multiple`, ...).
Evaluation only evaluates: `embedding-ft` loads the model `python -m eval train-baseline --kind embedding-ft` saved
(eval/train_baseline.py) and a missing one is an error naming that command.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from core.bfcl import default_data_dir, entries_to_queries, load_bfcl_catalog, load_bfcl_entries
from core.build import retrieval_checkpoint
from core.model import ToolGenModel
from core.retrieval import TOOLGEN_SYSTEMS, ToolGenRetriever, lexical_weight_of
from core.runtime import apply_precision, serving_precision
from core.settings import DEFAULT_DB, TOOLBENCH_DATA_DIR, TOOLGEN_VOCAB_FILE, model_dir
from core.splits import is_test
from core.toolbench import load_toolbench_corpus, load_toolbench_queries
from core.tools import Query, ToolCatalog
from core.vocab import grown_catalog

from .metrics import ranking_metrics
from .retrievers import BASELINES, baseline_retriever
from .stats import paired_test, summarise
from .store import MetricValue, QueryResult, ResultsStore

SYSTEMS = TOOLGEN_SYSTEMS + BASELINES
POOLED_GROUP = "all-groups"  # the ToolBench query files reported together: dataset `toolbench:all-groups`
GOLD_SEEN, GOLD_UNSEEN = "gold-seen", "gold-unseen"  # subsets: is some gold tool gold in a training query?


def catalog_suffix(tools: int) -> str:
    """What `--catalog-size` adds to a set's name: `toolbench:all-groups@10000-tools`."""
    return f"@{tools}-tools"


def catalog_size_of(dataset: str) -> int | None:
    """The catalog size a set's name records (`catalog_suffix`), None for a set over the corpus's own catalog."""
    whole = dataset.partition("/")[0]
    match = re.search(r"@(\d+)-tools$", whole)
    return int(match.group(1)) if match else None


HEADLINE = ("ndcg@1", "ndcg@3", "ndcg@5", "ndcg_paper@1", "ndcg_paper@5", "recall@5", "hit@1", "mrr")


@dataclass
class EvalSet:
    """Queries ranked over one pool: a query file (ToolBench) or the BFCL test split."""

    name: str
    queries: list[Query]
    pool: list[str] | None  # None: the whole catalog
    setting: str
    split: str
    content_hash: str


def _file_hash(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:16]


def _keep(queries: list[Query], split: str) -> list[Query]:
    if split == "all":
        return queries
    return [q for q in queries if is_test(q.text, q.id)]


def toolbench_sets(catalog: ToolCatalog, query_files: Sequence[Path], setting: str, split: str) -> list[EvalSet]:
    """One EvalSet per query file."""
    sets = []
    for path in query_files:
        queries = load_toolbench_queries(path, catalog)
        pool = None if setting == "multi-domain" else list(dict.fromkeys(t for q in queries for t in q.pool))
        sets.append(
            EvalSet(f"toolbench:{Path(path).stem}", _keep(queries, split), pool, setting, split, _file_hash([path]))
        )
    return sets


def bfcl_set(split: str) -> tuple[ToolCatalog, EvalSet]:
    """The BFCL catalog and its single-turn retrieval queries (entries with gold functions)."""
    catalog = load_bfcl_catalog()
    queries = entries_to_queries(load_bfcl_entries())
    data_hash = _file_hash(sorted(Path(default_data_dir()).glob("*.json")))
    return catalog, EvalSet("bfcl", _keep(queries, split), None, "all-functions", split, data_hash)


def pooled_set(name: str, sets: Sequence[EvalSet]) -> EvalSet:
    """The queries of several sets as one set (each query keeps the pool it is ranked in by its own set)."""
    first = sets[0]
    digest = hashlib.sha256("".join(e.content_hash for e in sets).encode()).hexdigest()[:16]
    return EvalSet(name, [q for e in sets for q in e.queries], None, first.setting, first.split, digest)


def sets_by_split(corpus: str, data_dir: Path, setting: str, split: str) -> tuple[ToolCatalog, list[EvalSet]]:
    """(catalog, sets) of the corpus's held-out (`test`) or training (`train`) queries."""
    if corpus == "toolbench":
        catalog = load_toolbench_corpus(data_dir / "corpus.json")
        sets = toolbench_sets(catalog, sorted((data_dir / "queries").glob("*.json")), setting, "all")
    else:
        catalog, evalset = bfcl_set("all")
        sets = [evalset]
    for evalset in sets:
        evalset.queries = [q for q in evalset.queries if is_test(q.text, q.id) == (split == "test")]
    return catalog, sets


def training_gold(corpus: str, data_dir: Path) -> set[str]:
    """Tool ids that are gold in some training-split query of the corpus (every visible ToolBench query file, or
    every BFCL entry with gold functions)."""
    if corpus == "bfcl":
        queries = entries_to_queries(load_bfcl_entries())
    else:
        catalog = load_toolbench_corpus(data_dir / "corpus.json")
        queries = [
            q for path in sorted((data_dir / "queries").glob("*.json")) for q in load_toolbench_queries(path, catalog)
        ]
    return {tool_id for q in queries if not is_test(q.text, q.id) for tool_id in q.gold}


def subsets(evalset: EvalSet, seen: set[str]) -> dict[str, list[int]]:
    """Named subsets of an eval set's queries (positions): gold-seen / gold-unseen, and BFCL categories."""
    named: dict[str, list[int]] = {GOLD_SEEN: [], GOLD_UNSEEN: []}
    for i, query in enumerate(evalset.queries):
        named[GOLD_SEEN if seen & set(query.gold) else GOLD_UNSEEN].append(i)
        if query.source.startswith("bfcl:"):
            named.setdefault(query.source.removeprefix("bfcl:"), []).append(i)
    return {name: positions for name, positions in named.items() if positions}


def subset_outcome(outcome: dict, positions: list[int]) -> dict:
    """An evaluation outcome restricted to some queries (latency percentiles recomputed; no throughput)."""
    results = [outcome["results"][i] for i in positions]
    p50, p95 = np.percentile([r.latency_ms for r in results], [50, 95])
    return {
        "results": results,
        "per_query": [outcome["per_query"][i] for i in positions],
        "latency_p50_ms": p50,
        "latency_p95_ms": p95,
        "throughput_qps": None,
    }


def merged_outcome(parts: Mapping[str, dict]) -> dict:
    """Evaluation outcomes of several sets (by set name) as one: query ids become `<set name>/<id>`, latency
    percentiles are recomputed, throughput is left out."""
    joined = {
        "results": [
            replace(r, query_id=f"{name}/{r.query_id}") for name, part in parts.items() for r in part["results"]
        ],
        "per_query": [metrics for part in parts.values() for metrics in part["per_query"]],
    }
    return subset_outcome(joined, list(range(len(joined["results"]))))


def default_toolgen_dir(corpus: str) -> Path:
    """The ToolGen checkpoint evaluated by default: the build's retrieval-stage model
    (models/toolgen-<corpus>-retrieval) when it exists, else models/toolgen-<corpus>."""
    built = model_dir(corpus)
    return retrieval_checkpoint(built) if retrieval_checkpoint(built).exists() else built


def load_toolgen(corpus: str, args: argparse.Namespace) -> ToolGenModel:
    """The ToolGen checkpoint to evaluate (`--model`, else `default_toolgen_dir`) in the serving precision."""
    model = ToolGenModel.load(Path(args.model) if args.model else default_toolgen_dir(corpus))
    apply_precision(model.model, serving_precision(args.precision))
    return model


def make_retrievers(systems: Sequence[str], catalog: ToolCatalog, corpus: str, args: argparse.Namespace) -> dict:
    """Each system's retriever over `catalog`: ToolGen (`--model`, loaded once for both ToolGen systems; with
    `--lexical-weight` for toolgen+bm25) or a baseline (eval/retrievers.py)."""
    toolgen = load_toolgen(corpus, args) if set(systems) & set(TOOLGEN_SYSTEMS) else None
    if toolgen is not None and set(toolgen.catalog.ids) != set(catalog.ids):
        raise ValueError(
            f"the ToolGen model holds {len(toolgen.catalog)} tools, the evaluation's catalog {len(catalog)}: "
            "evaluate a model built with --catalog-size N with the same --catalog-size"
        )
    retrievers = {}
    for system in systems:
        if system in TOOLGEN_SYSTEMS:
            weight = 0.0
            if system == "toolgen+bm25":
                weight = lexical_weight_of(toolgen) if args.lexical_weight is None else args.lexical_weight
            retrievers[system] = ToolGenRetriever(toolgen, num_beams=args.beams, lexical_weight=weight)
        else:
            retrievers[system] = baseline_retriever(system, catalog, corpus, args.ft_model)
    return retrievers


def evaluate(retriever, evalset: EvalSet, k: int, batch_size: int = 32) -> dict:
    """Rank every query once at batch size 1 (latency), then all in batches (throughput); score the rankings."""
    results, per_query = [], []
    for query in evalset.queries:
        start = time.perf_counter()
        hits = retriever.retrieve(query.text, k=k, pool=evalset.pool)
        latency_ms = (time.perf_counter() - start) * 1000
        ranked = [tool_id for tool_id, _ in hits]
        results.append(QueryResult(query.id, query.text, ranked, [s for _, s in hits], list(query.gold), latency_ms))
        per_query.append(ranking_metrics(ranked, query.gold))
    texts = [q.text for q in evalset.queries]
    start = time.perf_counter()
    for first in range(0, len(texts), batch_size):
        retriever.retrieve_batch(texts[first : first + batch_size], k=k, pool=evalset.pool)
    batch_seconds = time.perf_counter() - start
    p50, p95 = np.percentile([r.latency_ms for r in results], [50, 95]) if results else (None, None)
    return {
        "results": results,
        "per_query": per_query,
        "latency_p50_ms": p50,
        "latency_p95_ms": p95,
        "throughput_qps": len(texts) / batch_seconds if batch_seconds > 0 else None,
    }


def paired_against(outcomes: dict[str, dict], reference: str, metric: str = "ndcg@1") -> dict[str, dict]:
    """Paired test of `reference` against every other system on the same queries."""
    tests = {}
    for system, outcome in outcomes.items():
        if system != reference and reference in outcomes:
            test = paired_test(
                [m[metric] for m in outcomes[reference]["per_query"]],
                [m[metric] for m in outcome["per_query"]],
                n_resamples=5000,
            )
            tests[system] = {
                "metric": metric,
                "mean_diff": test.mean_diff,
                "ci_low": test.ci_low,
                "ci_high": test.ci_high,
                "p_value": test.p_value,
            }
    return tests


def _ranked_names(catalog: ToolCatalog, ranked: list[str], corpus: str) -> list:
    tools = [catalog[t] for t in ranked]
    return [t.api_name for t in tools] if corpus == "bfcl" else [[t.tool_name, t.api_name] for t in tools]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", choices=("toolbench", "bfcl"), required=True)
    parser.add_argument("--data-dir", default=str(TOOLBENCH_DATA_DIR), help="ToolBench data folder")
    parser.add_argument("--queries", nargs="*", help="query files (default: every file in DATA_DIR/queries)")
    parser.add_argument("--setting", choices=("in-domain", "multi-domain"), default="multi-domain")
    parser.add_argument("--split", choices=("test", "all"), default="test")
    parser.add_argument("--systems", default="toolgen,bm25,embedding,embedding-ft")
    parser.add_argument(
        "--model",
        help="ToolGen checkpoint (default: models/toolgen-<corpus>-retrieval, the build's "
        "retrieval-stage model, else models/toolgen-<corpus>)",
    )
    parser.add_argument(
        "--ft-model",
        help="fine-tuned embedding model (default: models/embedding-ft-<corpus>, "
        "trained by `python -m eval train-baseline --kind embedding-ft`)",
    )
    parser.add_argument("--beams", type=int, default=5)
    parser.add_argument(
        "--lexical-weight",
        type=float,
        help="weight of the BM25 prior of the toolgen+bm25 system (default: the weight recorded on the model by "
        "`python -m eval lexical-sweep --record`, else core.retrieval.DEFAULT_LEXICAL_WEIGHT)",
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "float32", "bfloat16"),
        default=None,
        help="ToolGen's decoder number format (default: env TOOLGEN_PRECISION, else auto by CPU flags)",
    )
    parser.add_argument(
        "--catalog-size",
        type=int,
        help="toolbench: grow the catalog to N tools with names-only distractors from the official token list "
        "(as `python -m core build --catalog-size N`); sets are named <set>@N-tools",
    )
    parser.add_argument("--vocab", default=str(TOOLGEN_VOCAB_FILE), help="token list for --catalog-size")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--limit", type=int, help="evaluate only the first N queries of each set")
    parser.add_argument("--db", default=str(DEFAULT_DB))
    parser.add_argument("--rankings-out", help="JSONL file: one line per (system, query)")
    parser.add_argument("--json", action="store_true", help="print the metrics per set and system as JSON")


def _store_outcomes(
    store: ResultsStore,
    name: str,
    evalset: EvalSet,
    outcomes: dict,
    systems: list[str],
    args: argparse.Namespace,
    lexical_weight: float | None,
) -> dict:
    """Store one run per system for the (sub)set `name`; return its report (metrics and paired tests)."""
    report = {}
    for system, outcome in outcomes.items():
        summary = summarise(outcome["per_query"])
        extras = {n: outcome[n] for n in ("latency_p50_ms", "latency_p95_ms", "throughput_qps")}
        metrics = [MetricValue(n, e.mean, e.ci_low, e.ci_high) for n, e in summary.items()]
        metrics += [MetricValue(n, v) for n, v in extras.items() if v is not None]
        config = {
            "system": system,
            "k": args.k,
            "beams": args.beams,
            "model": args.model,
            "precision": serving_precision(args.precision) if system in TOOLGEN_SYSTEMS else None,
            "lexical_weight": lexical_weight if system == "toolgen+bm25" else None,
            "cores": os.cpu_count(),
            "queries": len(outcome["results"]),
        }
        store.add_run(
            system,
            name,
            outcome["results"],
            metrics,
            config=config,
            dataset_hash=evalset.content_hash,
            setting=evalset.setting,
            split=evalset.split,
        )
        report[system] = {
            **{n: round(summary[n].mean, 4) for n in HEADLINE if n in summary},
            **{n: round(v, 2) for n, v in extras.items() if v is not None},
            "queries": len(outcome["results"]),
            "cores": os.cpu_count(),
        }
    for reference in [s for s in TOOLGEN_SYSTEMS if s in outcomes] or systems[:1]:
        report["paired_vs_" + reference] = paired_against(outcomes, reference)
    return report


def _store_with_subsets(
    store: ResultsStore, evalset: EvalSet, outcomes: dict, seen: set[str], systems: list[str], args, lexical_weight
) -> dict:
    """Store and report a set's runs and those of each of its subsets (`subsets`)."""
    report = {evalset.name: _store_outcomes(store, evalset.name, evalset, outcomes, systems, args, lexical_weight)}
    for subset, positions in subsets(evalset, seen).items():
        parts = {system: subset_outcome(outcome, positions) for system, outcome in outcomes.items()}
        name = f"{evalset.name}/{subset}"
        report[name] = _store_outcomes(store, name, evalset, parts, systems, args, lexical_weight)
    return report


def run(args: argparse.Namespace) -> int:
    """Evaluate the systems, store every run in DuckDB, print metrics."""
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        raise ValueError(f"unknown system {unknown[0]!r}; choose from {', '.join(SYSTEMS)}")
    if args.corpus == "toolbench":
        data_dir = Path(args.data_dir)
        catalog = load_toolbench_corpus(data_dir / "corpus.json")
        if args.catalog_size:
            catalog = grown_catalog(catalog, args.catalog_size, args.vocab)
        files = [Path(f) for f in args.queries] if args.queries else sorted((data_dir / "queries").glob("*.json"))
        sets = toolbench_sets(catalog, files, args.setting, args.split)
    elif args.catalog_size:
        raise ValueError("--catalog-size grows the ToolBench catalog only")
    else:
        catalog, evalset = bfcl_set(args.split)
        sets = [evalset]
    suffix = catalog_suffix(len(catalog)) if args.catalog_size else ""
    for evalset in sets:
        evalset.name += suffix
    if args.limit:
        for evalset in sets:
            evalset.queries = evalset.queries[: args.limit]
    seen = training_gold(args.corpus, Path(args.data_dir))
    retrievers = make_retrievers(systems, catalog, args.corpus, args)
    prior = retrievers["toolgen+bm25"].lexical if "toolgen+bm25" in retrievers else None
    lexical_weight = prior.weight if prior is not None else None  # stored with the toolgen+bm25 runs
    report, rankings, evaluated = {}, [], []
    with ResultsStore(args.db) as store:
        for evalset in sets:
            outcomes = {system: evaluate(r, evalset, args.k) for system, r in retrievers.items()}
            evaluated.append(outcomes)
            report.update(_store_with_subsets(store, evalset, outcomes, seen, systems, args, lexical_weight))
            rankings += [
                {
                    "system": system,
                    "query_id": r.query_id,
                    "ranked": _ranked_names(catalog, r.ranked, args.corpus),
                    "scores": r.scores,
                    "latency_ms": r.latency_ms,
                }
                for system, outcome in outcomes.items()
                for r in outcome["results"]
            ]
        if len(sets) > 1:  # every query file together, each query ranked as above (in its own file's pool)
            pooled = pooled_set(f"{args.corpus}:{POOLED_GROUP}{suffix}", sets)
            merged = {
                system: merged_outcome(
                    {e.name.split(":")[-1].removesuffix(suffix): o[system] for e, o in zip(sets, evaluated)}
                )
                for system in systems
            }
            report.update(_store_with_subsets(store, pooled, merged, seen, systems, args, lexical_weight))
    if args.rankings_out:
        with open(args.rankings_out, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(line, ensure_ascii=False) + "\n" for line in rankings)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        for name, systems_report in report.items():
            print(name)
            for system, values in systems_report.items():
                if not system.startswith("paired"):
                    print(f"  {system:14s} " + "  ".join(f"{k}={v}" for k, v in values.items()))
    return 0
