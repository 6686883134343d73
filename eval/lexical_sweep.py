"""Sweep of ToolGen's lexical-prior weight: ranking quality of log P(tool | query) + w * BM25 prior for a grid of w.

`python -m eval lexical-sweep --corpus toolbench|bfcl [--split test|train] [--setting in-domain|multi-domain]
 [--model DIR] [--weights 0,1,2,...] [--folds 5] [--record DIR] [--json]`

With atomic tool tokens one forward pass scores every tool, so the model runs once per query and the whole grid is
re-ranking (`core.retrieval` explains the prior). Prints NDCG@1/@5 per weight (and BM25 alone) for every set and its
gold-seen / gold-unseen (and BFCL category) subsets, and the best weight by NDCG@1 (then NDCG@5).

A weight picked on the queries it is then scored on flatters itself, so the sweep also reports a cross-validated
figure: the queries (all sets together) are cut into `--folds` folds; each fold is ranked with the weight that is
best on the other folds, and those rankings are scored and compared with BM25's, query by query (paired bootstrap
CI, sign-flip p). `--record DIR` writes the weight that is best on all the queries into the checkpoint's
`toolgen.json` (`lexical_weight`), which the toolgen+bm25 system then uses by default.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from core.lexical import LexicalIndex
from core.model import ToolGenModel, update_info
from core.retrieval import ToolGenRetriever
from core.runtime import apply_precision, serving_precision
from core.settings import TOOLBENCH_DATA_DIR

from .metrics import ranking_metrics
from .retrieval_eval import EvalSet, default_toolgen_dir, pooled_set, sets_by_split, subsets, training_gold
from .stats import paired_test

WEIGHTS = (0, 0.5, 1, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20, 50)
METRICS = ("ndcg@1", "ndcg@5")
BM25 = "bm25"  # the prior alone (ties in catalog order, as the BM25 baseline breaks them)


def sweep(retriever: ToolGenRetriever, lexical: LexicalIndex, evalset: EvalSet, weights) -> dict:
    """Per weight (and for `BM25`), the ranking metrics of every query of `evalset` (in order)."""
    pool = evalset.pool or lexical.ids
    position = {tool_id: i for i, tool_id in enumerate(lexical.ids)}
    columns = np.array([position[t] for t in pool])
    per_weight = {w: [] for w in [*weights, BM25]}
    order = np.arange(len(pool))
    for query in tqdm(evalset.queries, desc=evalset.name, leave=False):
        log_probs = dict(retriever.retrieve(query.text, k=len(pool), pool=evalset.pool))
        model = np.array([log_probs[t] for t in pool])
        prior = lexical.prior(query.text)[columns]
        for w in weights:
            ranked = [pool[i] for i in np.lexsort((order, -(model + w * prior)))[:5]]
            per_weight[w].append(ranking_metrics(ranked, query.gold))
        per_weight[BM25].append(ranking_metrics([pool[i] for i in np.lexsort((order, -prior))[:5]], query.gold))
    return per_weight


def best_weight(per_weight: dict, positions: Sequence[int]) -> float:
    """The weight with the best mean NDCG@1 (then NDCG@5) over the queries at `positions`; ties: the smallest."""
    weights = sorted(w for w in per_weight if w != BM25)
    means = {w: tuple(np.mean([per_weight[w][i][m] for i in positions]) for m in METRICS) for w in weights}
    return max(weights, key=lambda w: (means[w], -w))


def cross_validated(per_weight: dict, folds: int) -> dict:
    """Each fold (every `folds`-th query) ranked with the weight best on the others; scored against BM25."""
    n = len(per_weight[BM25])
    if not 2 <= folds <= n:
        raise ValueError(f"--folds must be between 2 and the number of queries ({n}), got {folds}")
    chosen, metrics = [], [None] * n
    for fold in range(folds):
        inside = [i for i in range(n) if i % folds == fold]
        weight = best_weight(per_weight, [i for i in range(n) if i % folds != fold])
        chosen.append(weight)
        for i in inside:
            metrics[i] = per_weight[weight][i]
    report = {"folds": folds, "weights_chosen": chosen}
    for m in METRICS:
        test = paired_test([x[m] for x in metrics], [x[m] for x in per_weight[BM25]], n_resamples=5000)
        report[m] = round(100 * float(np.mean([x[m] for x in metrics])), 1)
        report[f"{m} minus bm25"] = {
            "mean": round(100 * test.mean_diff, 1),
            "ci": [round(100 * test.ci_low, 1), round(100 * test.ci_high, 1)],
            "p_value": round(test.p_value, 4),
        }
    return report


def summarise(per_weight: dict[float, list[dict]], positions: list[int]) -> dict:
    """Mean NDCG@1/@5 (percent) per weight over the queries at `positions`, and the best weight by NDCG@1."""
    rows = {
        str(w): {m: round(100 * float(np.mean([metrics[i][m] for i in positions])), 1) for m in METRICS}
        for w, metrics in per_weight.items()
    }
    return {"queries": len(positions), "best_weight": best_weight(per_weight, positions), "by_weight": rows}


def report_for(evalset: EvalSet, per_weight: dict[float, list[dict]], seen: set[str]) -> dict:
    """`summarise` over all queries and over each subset (gold-seen / gold-unseen, BFCL categories)."""
    named = {"all": list(range(len(evalset.queries))), **subsets(evalset, seen)}
    return {name: summarise(per_weight, positions) for name, positions in named.items()}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", choices=("toolbench", "bfcl"), required=True)
    parser.add_argument("--data-dir", default=str(TOOLBENCH_DATA_DIR), help="ToolBench data folder")
    parser.add_argument("--setting", choices=("in-domain", "multi-domain"), default="multi-domain")
    parser.add_argument("--split", choices=("test", "train"), default="test")
    parser.add_argument("--model", help="ToolGen checkpoint (default: as `python -m eval retrieval`)")
    parser.add_argument("--weights", default=",".join(str(w) for w in WEIGHTS))
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds over the queries")
    parser.add_argument("--record", help="write the best weight into this checkpoint's toolgen.json")
    parser.add_argument("--precision", choices=("auto", "float32", "bfloat16"), default=None)
    parser.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    weights = [float(w) for w in args.weights.split(",") if w.strip()]
    if not weights or any(not w >= 0 for w in weights):
        raise ValueError(f"--weights must be numbers >= 0, got {args.weights!r}")
    model = ToolGenModel.load(Path(args.model) if args.model else default_toolgen_dir(args.corpus))
    if model.indexing.scheme != "atomic":
        raise ValueError("the sweep scores every tool in one pass, which needs atomic tool tokens")
    apply_precision(model.model, serving_precision(args.precision))
    catalog, sets = sets_by_split(args.corpus, Path(args.data_dir), args.setting, args.split)
    retriever, lexical = ToolGenRetriever(model), LexicalIndex(catalog)
    seen = training_gold(args.corpus, Path(args.data_dir))
    results = {s.name: sweep(retriever, lexical, s, weights) for s in sets}
    report = {s.name: report_for(s, results[s.name], seen) for s in sets}
    together = {w: [m for s in sets for m in results[s.name][w]] for w in [*weights, BM25]}
    if len(sets) > 1:  # every query file together
        report["pooled"] = report_for(pooled_set("pooled", sets), together, seen)
    summary = {
        "weight": best_weight(together, range(len(together[BM25]))),
        "cross_validated": cross_validated(together, args.folds),
    }
    if args.record:
        update_info(args.record, {"lexical_weight": summary["weight"]})
        summary["recorded_in"] = args.record
    result = {"corpus": args.corpus, "split": args.split, "setting": args.setting, **summary, "sets": report}
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(json.dumps(summary))
        for name, subsets_report in report.items():
            for subset, r in sorted(subsets_report.items()):
                line = "  ".join(f"{w}:{v['ndcg@1']}/{v['ndcg@5']}" for w, v in r["by_weight"].items())
                print(f"{name} {subset} ({r['queries']}) best {r['best_weight']}: {line}")
    return 0
