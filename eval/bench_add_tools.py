"""Adding tools without a rebuild, measured: hold out 10 % of ToolBench's APIs from a build, add them afterwards.

    python -m eval add-tools-bench [--full models/toolgen-toolbench-retrieval] [--work models/add-tools-bench]
                                   [--fraction 0.1] [--seed 0]

1. Held out: whole tool families (every API of a RapidAPI tool, as a new tool arrives), drawn at random (`--seed`)
   among the families that gold APIs of the held-out test queries belong to, until `--fraction` of the catalog's
   APIs is reached; so that enough test queries measure the added tools. Written to WORK/held_out.txt and, as
   ToolBench `api_list` entries, to WORK/new_tools.json.
2. `python -m core build --corpus toolbench --stages memorization,retrieval --hold-out WORK/held_out.txt`
   (WORK/without): the catalog without them, and no training query that names one.
3. `python -m core add-tools --model WORK/without --tools WORK/new_tools.json` (WORK/added).
4. The three models rank the held-out test queries: those naming an added tool (`added-tools`: the full
   rebuild, which had them from the start, against the added model) and the others (`old-tools`: the model
   before and after adding, and the full rebuild); and, for forgetting at a finer grain, the training queries of
   the old tools (`old-tools-train`: before and after adding). Paired tests on NDCG@1 and @5.

Steps 2 and 3 run as subprocesses; their JSON reports (wall time, peak RSS) are kept as WORK/without.json and
WORK/added.json, and a step with a report is not run again. Training seconds are what each model's `toolgen.json`
records, beside the full rebuild's (same preset).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from core.build import load_corpus, retrieval_checkpoint
from core.model import ToolGenModel
from core.retrieval import ToolGenRetriever
from core.runtime import apply_precision, describe_machine, serving_precision
from core.settings import TOOLBENCH_DATA_DIR, model_dir
from core.toolbench import read_json

from .metrics import ranking_metrics
from .stats import paired_test
from .steps import run_step

METRICS = ("ndcg@1", "ndcg@5")
ADDED, OLD = "added-tools", "old-tools"  # test queries naming an added tool / only tools the build had
OLD_TRAIN = "old-tools-train"  # training queries of the old tools: what the build learnt, for forgetting


def family(tool_id: str) -> str:
    """The RapidAPI tool a ToolBench API belongs to (`tool_name&&api_name` -> `tool_name`)."""
    return tool_id.split("&&", 1)[0]


def choose_held_out(catalog_ids: list[str], test_gold: list[str], fraction: float, seed: int) -> list[str]:
    """Whole families named by test queries, in a seeded random order, until `fraction` of the APIs is held out."""
    if not 0 < fraction < 1:
        raise ValueError(f"--fraction must be between 0 and 1, got {fraction}")
    sizes: dict[str, int] = {}
    for tool_id in catalog_ids:
        sizes[family(tool_id)] = sizes.get(family(tool_id), 0) + 1
    order = sorted({family(t) for t in test_gold}, key=lambda f: hashlib.sha1(f"{seed}:{f}".encode()).hexdigest())
    chosen, count = set(), 0
    for name in order:
        if count >= fraction * len(catalog_ids):
            break
        chosen.add(name)
        count += sizes[name]
    return [t for t in catalog_ids if family(t) in chosen]


def write_inputs(data_dir: Path, held_out: list[str], work: Path) -> tuple[Path, Path]:
    """WORK/held_out.txt (one id per line) and WORK/new_tools.json (their corpus.json entries)."""
    wanted = set(held_out)
    entries = [e for e in read_json(data_dir / "corpus.json") if f"{e['tool_name']}&&{e['api_name']}" in wanted]
    work.mkdir(parents=True, exist_ok=True)
    ids_file, tools_file = work / "held_out.txt", work / "new_tools.json"
    ids_file.write_text("".join(f"{t}\n" for t in held_out), encoding="utf-8")
    tools_file.write_text(json.dumps(entries, indent=1), encoding="utf-8")
    return ids_file, tools_file


def training_seconds(reports: dict) -> float:
    """Seconds of memorization and retrieval training in a model's stage reports."""
    return round(sum(reports[s]["seconds"] for s in ("memorization", "retrieval") if s in reports), 1)


def rank(retriever: ToolGenRetriever, queries: list) -> list[dict]:
    """Per-query NDCG of the retriever's top 5 for each query (whole catalog)."""
    return [ranking_metrics([t for t, _ in retriever.retrieve(q.text, k=5)], q.gold) for q in queries]


def compare(per_query: dict[str, list[dict]], before: str, after: str) -> dict:
    """Means of both systems and the paired test of the change `after` minus `before`, per metric."""
    out = {}
    for metric in METRICS:
        a, b = ([m[metric] for m in per_query[s]] for s in (before, after))
        test = paired_test(b, a, n_resamples=5000)  # b - a: the change
        out[metric] = {
            before: round(100 * sum(a) / len(a), 1),
            after: round(100 * sum(b) / len(b), 1),
            "change": round(100 * test.mean_diff, 1),
            "ci": [round(100 * test.ci_low, 1), round(100 * test.ci_high, 1)],
            "p": round(test.p_value, 3),
        }
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--full", default=None, help="the full rebuild (default: the ToolBench build's retrieval checkpoint)"
    )
    parser.add_argument("--work", default="models/add-tools-bench", help="folder for the two models and inputs")
    parser.add_argument("--data-dir", default=str(TOOLBENCH_DATA_DIR), help="ToolBench data folder")
    parser.add_argument("--fraction", type=float, default=0.1, help="share of the APIs held out (default 0.1)")
    parser.add_argument("--seed", type=int, default=0, help="which families are held out")
    parser.add_argument("--preset", default=None, help="build preset (default: the ToolBench build's)")
    parser.add_argument("--precision", choices=("auto", "float32", "bfloat16"), default="auto")


def run(args: argparse.Namespace) -> int:
    """Run the steps not done yet, evaluate, print the record."""
    data_dir, work = Path(args.data_dir), Path(args.work)
    full_dir = Path(args.full) if args.full else retrieval_checkpoint(model_dir("toolbench"))
    if not (full_dir / "toolgen.json").exists():
        raise FileNotFoundError(f"{full_dir}: no full ToolBench build (`python -m core build --corpus toolbench`)")
    corpus = load_corpus("toolbench", data_dir)
    held_out = choose_held_out(corpus.catalog.ids, [t for q in corpus.test for t in q.gold], args.fraction, args.seed)
    ids_file, tools_file = write_inputs(data_dir, held_out, work)
    without, added = work / "without", work / "added"
    stages = "memorization,retrieval"
    build_cmd = ["core", "build", "--corpus", "toolbench", "--data-dir", str(data_dir), "--stages", stages]
    build_cmd += ["--preset", args.preset] if args.preset else []
    built = run_step([*build_cmd, "--hold-out", str(ids_file), "--out", str(without)], work / "without.json")
    add_cmd = ["core", "add-tools", "--model", str(without), "--tools", str(tools_file), "--out", str(added)]
    grown = run_step(add_cmd, work / "added.json")
    gone = set(held_out)
    groups = {
        ADDED: [q for q in corpus.test if gone & set(q.gold)],
        OLD: [q for q in corpus.test if not gone & set(q.gold)],
        OLD_TRAIN: [q for q in corpus.train if not gone & set(q.gold)],
    }
    models = {"full": full_dir, "without": without, "added": added}
    per_query: dict[str, dict[str, list[dict]]] = {group: {} for group in groups}
    seconds = {}
    for name, folder in models.items():
        model = ToolGenModel.load(folder)
        reports = model.info.get("reports", {})
        seconds[name] = training_seconds(reports["add-tools"] if name == "added" else reports)
        apply_precision(model.model, serving_precision(args.precision))
        retriever = ToolGenRetriever(model)
        for group, queries in groups.items():
            if name != "without" or group != ADDED:  # the model without the tools cannot name them
                per_query[group][name] = rank(retriever, queries)
    record = {
        "machine": describe_machine(),
        "held_out": {
            "apis": len(held_out),
            "families": len({family(t) for t in held_out}),
            "of_apis": len(corpus.catalog),
            "seed": args.seed,
        },
        "queries": {group: len(queries) for group, queries in groups.items()},
        ADDED: compare(per_query[ADDED], "full", "added"),
        OLD: {
            "after_adding": compare(per_query[OLD], "without", "added"),
            "against_full": compare(per_query[OLD], "full", "added"),
        },
        OLD_TRAIN: {"after_adding": compare(per_query[OLD_TRAIN], "without", "added")},
        "training_s": {"full_rebuild": seconds["full"], "without": seconds["without"], "add_tools": seconds["added"]},
        "wall_s": {"build_without": built["wall_s"], "add_tools": grown["wall_s"]},
        "peak_rss_mb": {"build_without": built["peak_rss_mb"], "add_tools": grown["peak_rss_mb"]},
    }
    print(json.dumps(record, indent=1))
    return 0
