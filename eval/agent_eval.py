"""End-to-end agent evaluation: ToolGen against a retrieve-read agent on BFCL and ToolBench.

`python -m eval agent --dataset bfcl-single|bfcl-multi|toolbench|toolbench-reference [--data-dir DIR]
 [--systems toolgen,retrieve-read] [--model DIR] [--baseline-model DIR | --untuned-baseline] [--base smollm2]
 [--db FILE] [--split test|all] [--limit N] [--json]`

The systems are in eval/agent_systems.py, the datasets in eval/agent_datasets.py. The retrieve-read agent's model
is `--baseline-model` (default models/retrieve-read-<corpus>), trained beforehand by
`python -m eval train-baseline --kind retrieve-read --corpus <corpus>`; a missing one is an error naming that
command, unless `--untuned-baseline` asks for the untuned `--base` model. Runs record `tuned`.

Metrics of every system: `finished` (every user turn ended with Finish), `steps`, `calls`, `errors` (error
events), `hallucinated` (calls to a tool outside the offered set: zero for both systems by construction, counted
from the trajectories anyway) and `probe_invalid` (share of actions where greedy decoding *without* the
constraint would not have named an offered tool or Finish), besides the dataset's own. Every trajectory goes to
the DuckDB store with its metrics, and each system gets one run with the means and bootstrap 95% CIs. The GPT-3.5
answers of toolbench-reference tasks are stored as trajectories of system `gpt-3.5-reference`, once per task
however often the dataset runs, so the Annotate tab pairs them with the systems' runs; the report gives their
metrics (eval/reference_answers.py) beside the systems'.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

from core.agent import AgentConfig, AgentTrace, finish_margin, reads_documentation, run_to_end
from core.bfcl import load_bfcl_catalog
from core.build import load_corpus
from core.examples import AGENT
from core.model import SMOLLM2, ToolGenModel
from core.settings import DEFAULT_DB, TOOLBENCH_DATA_DIR, baseline_dir, model_dir
from core.splits import spread
from core.toolbench import load_toolbench_corpus
from core.tools import ToolCatalog

from .agent_datasets import (
    DATASETS,
    Task,
    bfcl_multi_tasks,
    bfcl_single_tasks,
    toolbench_reference_tasks,
    toolbench_tasks,
)
from .agent_systems import RetrieveReadSystem, ToolGenSystem, untuned_retrieve_read
from .retrievers import missing_baseline
from .stats import summarise
from .store import MetricValue, ResultsStore, StoredTrajectory

SYSTEMS = ("toolgen", "retrieve-read")


def trajectory_metrics(trajectory: AgentTrace, offered: set[str]) -> dict[str, float]:
    """Metrics every system gets (see the module docstring)."""
    actions = [e for e in trajectory.events if e.kind == "action"]
    probed = [a for a in actions if a.unconstrained_valid is not None]
    return {
        "finished": float(trajectory.finished),
        "steps": float(len(actions)),
        "calls": float(len(trajectory.calls)),
        "errors": float(sum(e.kind == "error" for e in trajectory.events)),
        "hallucinated": float(sum(tool_id not in offered for _, tool_id, _ in trajectory.calls)),
        **({"probe_invalid": sum(not a.unconstrained_valid for a in probed) / len(probed)} if probed else {}),
    }


def evaluate(
    system: ToolGenSystem | RetrieveReadSystem, tasks: Sequence[Task], config: AgentConfig, log=print
) -> tuple[list[StoredTrajectory], list[str]]:
    """Run `system` on every task; the stored trajectories with their metrics, and the tasks skipped (why)."""
    stored, skipped = [], []
    for number, task in enumerate(tasks, start=1):
        start = time.perf_counter()
        try:
            trajectory = run_to_end(system.model, system.user_turns(task.turns), task.make_executor(), config=config)
        except ValueError as error:  # e.g. offered tools the model does not know
            skipped.append(f"{task.id}: {error}")
            continue
        seconds = time.perf_counter() - start
        offered = task.offered if task.offered is not None else set(system.model.catalog.ids)
        metrics = {**trajectory_metrics(trajectory, offered), **task.score(trajectory), "seconds": seconds}
        stored.append(
            StoredTrajectory(
                system.name,
                task.group,
                task.id,
                task.turns[0][0],
                [e.to_dict() for e in trajectory.events],
                trajectory.final_answer or "",
                metrics,
            )
        )
        log(f"[{system.name}] {number}/{len(tasks)} {task.id}: " + " ".join(f"{k}={v:.2f}" for k, v in metrics.items()))
    return stored, skipped


def store_once(store: ResultsStore, trajectories: Sequence[StoredTrajectory]) -> int:
    """Store the trajectories whose (system, dataset, query id) the store does not hold yet; how many it stored."""
    held = {
        (t.system, t.dataset, t.query_id)
        for dataset in {t.dataset for t in trajectories}
        for t in store.trajectories(dataset=dataset)
    }
    new = {}
    for trajectory in trajectories:
        key = (trajectory.system, trajectory.dataset, trajectory.query_id)
        if key not in held:
            new.setdefault(key, trajectory)
    store.add_trajectories(new.values())
    return len(new)


def build_tasks(args: argparse.Namespace, catalog: ToolCatalog) -> list[Task]:
    """The tasks of `--dataset` (eval/agent_datasets.py), `--limit` of them spread evenly when given."""
    categories = [c.strip() for c in args.categories.split(",")] if args.categories else None
    if args.dataset == "bfcl-single":
        tasks = bfcl_single_tasks(catalog, args.split, categories)
    elif args.dataset == "bfcl-multi":
        tasks = bfcl_multi_tasks(catalog, args.split, categories)
    elif args.dataset == "toolbench-reference":
        data_dir = Path(args.data_dir)
        files = (
            [Path(f) for f in args.queries] if args.queries else sorted((data_dir / "reference_answers").glob("*.json"))
        )
        training = load_corpus("toolbench", data_dir).training_texts() if args.split == "test" else ()
        tasks = toolbench_reference_tasks(catalog, files, args.pool, args.cache, training)
    else:
        data_dir = Path(args.data_dir)
        files = [Path(f) for f in args.queries] if args.queries else sorted((data_dir / "queries").glob("*.json"))
        tasks = toolbench_tasks(catalog, files, args.split, args.pool, args.cache)
    return spread(tasks, args.limit) if args.limit else tasks


def load_catalog(args: argparse.Namespace) -> ToolCatalog:
    """The dataset's tool catalog (the retrieve-read agent's tools, and the ids tasks are written in)."""
    if args.dataset.startswith("toolbench"):
        return load_toolbench_corpus(Path(args.data_dir) / "corpus.json")
    return load_bfcl_catalog()


def retrieve_read_dir(args: argparse.Namespace, corpus: str) -> Path | None:
    """The trained retrieve-read checkpoint to evaluate (None with `--untuned-baseline`); a missing one is a
    FileNotFoundError naming the command that trains it."""
    if args.untuned_baseline:
        return None
    path = Path(args.baseline_model) if args.baseline_model else baseline_dir("retrieve-read", corpus)
    if not (path / "toolgen.json").exists():
        raise missing_baseline("retrieve-read", corpus, path, "or pass --untuned-baseline")
    return path


def load_system(
    name: str, args: argparse.Namespace, catalog: ToolCatalog, corpus: str
) -> tuple[ToolGenSystem | RetrieveReadSystem, bool]:
    """A system and whether its model was agent-tuned."""
    if name == "toolgen":
        return ToolGenSystem(ToolGenModel.load(args.model or model_dir(corpus))), True
    path = retrieve_read_dir(args, corpus)
    if path is None:
        return RetrieveReadSystem(untuned_retrieve_read(catalog, args.base), args.k), False
    model = ToolGenModel.load(path)
    return RetrieveReadSystem(model, args.k), AGENT in model.info.get("stages", [])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", choices=DATASETS, required=True)
    parser.add_argument("--data-dir", default=str(TOOLBENCH_DATA_DIR), help="ToolBench data folder (toolbench*)")
    parser.add_argument(
        "--queries",
        nargs="*",
        help="ToolBench query files (default: every file in DATA_DIR/queries); "
        "toolbench-reference: reference-answer files (default: every "
        "file in DATA_DIR/reference_answers)",
    )
    parser.add_argument("--categories", help="BFCL categories, comma-separated (default: all of the dataset's)")
    parser.add_argument("--split", choices=("test", "all"), default="test")
    parser.add_argument(
        "--pool",
        choices=("query", "catalog"),
        default="query",
        help="toolbench*: offer the query's tools (api_list, or the answer's available tools) or the whole catalog",
    )
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--model", help="ToolGen checkpoint (default: models/toolgen-<bfcl|toolbench>)")
    baseline = parser.add_mutually_exclusive_group()
    baseline.add_argument(
        "--baseline-model",
        help="retrieve-read checkpoint (default: models/retrieve-read-<corpus>, "
        "trained by `python -m eval train-baseline --kind retrieve-read`)",
    )
    baseline.add_argument(
        "--untuned-baseline", action="store_true", help="evaluate the retrieve-read agent with the untuned --base model"
    )
    parser.add_argument("--base", default=SMOLLM2, help="base model of the untuned retrieve-read agent")
    parser.add_argument("--k", type=int, default=5, help="tools the retrieve-read agent retrieves per user message")
    parser.add_argument("--max-steps", type=int, default=AgentConfig.max_steps, help="assistant turns per user turn")
    parser.add_argument("--max-thought-tokens", type=int, default=AgentConfig.max_thought_tokens)
    parser.add_argument("--max-argument-tokens", type=int, default=AgentConfig.max_argument_tokens)
    parser.add_argument(
        "--agent-docs",
        choices=("model", "on", "off"),
        default="model",
        help="toolgen: read the chosen tool's documentation before its Action Input (documentation on demand); "
        "model (default): as the checkpoint was agent-tuned (`python -m core build --agent-docs`)",
    )
    parser.add_argument(
        "--typed-arguments",
        action="store_true",
        help="hold every system's argument values to their JSON-schema types (integers, numbers, booleans, enums)",
    )
    parser.add_argument(
        "--finish-margin",
        type=float,
        default=None,
        help="a user turn's first action is Finish only if its log-prob beats the best offered tool's by this (nats); "
        "default: the model's recorded margin (toolgen.json finish_margin), else 0",
    )
    parser.add_argument(
        "--copy-bonus",
        type=float,
        default=0.0,
        help="with --typed-arguments: logit bonus for string-value tokens that copy a span of the user's request",
    )
    parser.add_argument("--cache", help="ToolBench response cache file (JSON records of real responses)")
    parser.add_argument("--limit", type=int, help="evaluate N tasks spread evenly over the dataset (deterministic)")
    parser.add_argument("--db", default=str(DEFAULT_DB))
    parser.add_argument("--json", action="store_true", help="print the metrics per system as JSON")


def run(args: argparse.Namespace) -> int:
    """Run the systems on the dataset, store trajectories and metrics, print the summary."""
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        raise ValueError(f"unknown system(s) {unknown}; choose from {', '.join(SYSTEMS)}")
    corpus = "toolbench" if args.dataset.startswith("toolbench") else "bfcl"
    if "retrieve-read" in systems:
        retrieve_read_dir(args, corpus)  # a missing baseline fails now, not after the other systems ran
    catalog = load_catalog(args)
    tasks = build_tasks(args, catalog)
    config = AgentConfig(
        max_steps=args.max_steps,
        max_thought_tokens=args.max_thought_tokens,
        max_argument_tokens=args.max_argument_tokens,
        probe_unconstrained=True,
        typed_arguments=args.typed_arguments,
        copy_bonus=args.copy_bonus,
        finish_margin=args.finish_margin,
    )
    toolgen_docs = {"model": None, "on": True, "off": False}[args.agent_docs]
    setting = f"pool={args.pool}" if corpus == "toolbench" else "offered-functions"
    log = (lambda message: None) if args.json else print
    report = {}
    with ResultsStore(args.db) as store:
        references = [task.reference for task in tasks if task.reference is not None]
        if references:
            added = store_once(store, references)
            report[references[0].system] = {
                "tasks": len(references),
                "stored_now": added,
                "skipped": [],
                **{n: round(e.mean, 4) for n, e in summarise(t.metrics for t in references).items()},
            }
        for name in systems:
            system, tuned = load_system(name, args, catalog, corpus)
            system_config = replace(config, agent_docs=toolgen_docs) if name == "toolgen" else config
            trajectories, skipped = evaluate(system, tasks, system_config, log)
            store.add_trajectories(trajectories)
            summary = summarise(t.metrics for t in trajectories)
            store.add_run(
                name,
                args.dataset,
                metrics=[MetricValue(f"agent_{n}", e.mean, e.ci_low, e.ci_high) for n, e in summary.items()],
                config={
                    "system": name,
                    "model": args.model,
                    "base": args.base,
                    "k": args.k,
                    "agent": {
                        **asdict(system_config),
                        "agent_docs": reads_documentation(system.model, system_config),
                        "finish_margin": finish_margin(system.model, system_config),
                    },
                    "tasks": len(trajectories),
                    "skipped": len(skipped),
                    "tuned": tuned,
                    "cores": os.cpu_count(),
                },
                setting=setting,
                split=args.split,
            )
            report[name] = {
                "tasks": len(trajectories),
                "skipped": skipped[:5],
                "n_skipped": len(skipped),
                **{n: round(e.mean, 4) for n, e in summary.items()},
            }
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        for name, values in report.items():
            print(f"{name:14s} " + "  ".join(f"{k}={v}" for k, v in values.items() if k != "skipped"))
            for reason in values["skipped"]:
                print(f"  skipped {reason}")
    return 0
