"""End-to-end agent evaluation: ToolGen against a retrieve-read agent on BFCL and ToolBench.

`python -m eval agent --dataset bfcl-single|bfcl-multi|toolbench|toolbench-reference [--data-dir DIR]
 [--systems toolgen,retrieve-read] [--model DIR] [--baseline-model DIR] [--tune-baseline] [--base smollm2] [--db FILE]
 [--split test|all] [--limit N] [--json]`

Systems (both run the same agent loop, core/agent.py):
- toolgen: the ToolGen checkpoint; actions are decoded over the codes of the offered tools.
- retrieve-read: the paradigm ToolGen is compared with. BM25 picks the top `--k` offered tools for each user
  message, their documentation is appended to that message, and a base model acts. Its action is constrained to
  the retrieved tools' names in ordinary tokens (semantic codes `tool_name: api_name<<end>>`), so its calls are
  checked exactly like ToolGen's. The model is `--baseline-model` (default models/retrieve-read-<corpus>) when
  that checkpoint exists; else, with `--tune-baseline`, the base model (`--base`) is tuned with core/train.py on
  the training trajectories ToolGen's agent stage samples (core/build.py), rendered with the retrieved documents
  in context (gold tools always among them), and saved there; otherwise the untuned base model acts. Runs record
  `tuned`.

Datasets (`--split test`, the default, keeps the held-out test side of core/splits.py; `--split all` keeps all):
- bfcl-single: BFCL's AST and relevance categories. The calls made before Finish are checked with
  eval/bfcl_checker: the first call for simple and multiple categories, every call for parallel ones, and for
  relevance whether any call was made (irrelevance is correct only when none is). Calls run on a BfclExecutor
  without backends: the observation says whether the arguments fit the schema.
- bfcl-multi: BFCL's multi-turn categories on live backends (the entry's initial config). The model's calls of
  each turn and the ground truth are replayed on fresh backends (state and responses per turn): `correct` is BFCL's
  task accuracy, `turns_passed` the share of turns passed before the first failure. Held-out functions join the
  offered tools at their turn. User turns are rendered as in agent tuning (core/examples.py).
- toolbench: the visible query files on the simulated environment (core/executors/toolbench.py): `gold_recall`
  (share of the gold APIs called), `finished`. `--pool query` offers the query's api_list, `--pool catalog` the
  whole catalog (the paper's unfiltered setting).
- toolbench-reference: the queries of the GPT-3.5 reference answers (DATA_DIR/reference_answers/*.json, read by
  eval/reference_answers.py) on the same environment. `--pool query` offers the answer's available tools that
  resolve to catalog tools (answers with none are left out). `--split test` leaves out the queries whose
  normalised text feeds ToolGen's training (core.build.load_corpus: training queries and trajectories).
  `reference_recall`: share of the resolved tools GPT-3.5 called that the system called too (absent when it
  called none). The GPT-3.5 answers of the tasks are stored as trajectories of system `gpt-3.5-reference`, once
  per task however often the dataset runs, so the Annotate tab pairs them with the systems' runs; the report
  gives their metrics (eval/reference_answers.py) beside the systems'.
Metrics of every system: `finished` (every user turn ended with Finish), `steps`, `calls`, `errors` (error
events), `hallucinated` (calls to a tool outside the offered set: zero for both systems by construction, counted
from the trajectories anyway) and `probe_invalid` (share of actions where greedy decoding *without* the
constraint would not have named an offered tool or Finish). Every trajectory goes to the DuckDB store with its
metrics, and each system gets one run with the means and bootstrap 95% CIs.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

from core.agent import AgentConfig, AgentTrace, UserTurn, run_to_end
from core.bfcl_trajectories import CONTINUE_TEXT
from core.indexing import END, FINISH
from core.model import SMOLLM2, ToolGenModel, load_base
from core.tools import Tool, ToolCatalog

from .retrieval_eval import DEFAULT_DB, MODELS_DIR
from .stats import bootstrap_ci
from .store import MetricValue, ResultsStore
from .store import Trajectory as StoredTrajectory

DATASETS = ("bfcl-single", "bfcl-multi", "toolbench", "toolbench-reference")
SYSTEMS = ("toolgen", "retrieve-read")


@dataclass
class Task:
    """One conversation to run: user texts with the tools offered from each turn on, an executor factory,
    a scorer of the finished trajectory (tool ids in, metrics out), and a reference run to store with it."""

    id: str
    group: str  # the dataset name stored with the trajectory
    turns: list[tuple[str, tuple[str, ...] | None]]  # (user text, offered tool ids or None = the whole catalog)
    make_executor: Callable[[], object]
    score: Callable[[AgentTrace], dict[str, float]]
    reference: StoredTrajectory | None = None

    @property
    def offered(self) -> set[str] | None:
        """Every tool offered in the conversation (None: the whole catalog)."""
        if any(pool is None for _, pool in self.turns):
            return None
        return {tool_id for _, pool in self.turns for tool_id in pool}


# ---------------------------------------------------------------- systems

class ToolGenSystem:
    """The ToolGen checkpoint, acting over the offered tools' codes."""

    name = "toolgen"

    def __init__(self, toolgen: ToolGenModel):
        self.toolgen = toolgen

    def user_turns(self, task: Task) -> list[UserTurn]:
        return [UserTurn(text, pool) for text, pool in task.turns]


def documents_message(text: str, tools: Sequence[Tool], names: Sequence[str]) -> str:
    """A user message followed by the documentation of `tools`, each under the action name to write."""
    docs = "\n\n".join(f"Action name: {name}\n{tool.document()}" for tool, name in zip(tools, names))
    return f"{text}\n\nTools you can use (write the Action as the tool's action name):\n\n{docs}"


class RetrieveReadSystem:
    """BM25 top-k tools with their documents in the user message; the action is constrained to their names.

    `toolgen` is a semantic-code model (`tool_name: api_name<<end>>` in ordinary tokens): the untuned base
    (`untuned_retrieve_read`) or one tuned by `tune_retrieve_read`.
    """

    name = "retrieve-read"

    def __init__(self, toolgen: ToolGenModel, k: int = 5):
        from .retrievers import BM25Retriever

        if toolgen.indexing.scheme != "semantic":
            raise ValueError(f"the retrieve-read agent needs semantic codes, got {toolgen.indexing.scheme!r}")
        self.toolgen, self.k = toolgen, k
        self.retriever = BM25Retriever(toolgen.catalog)

    def user_turn(self, text: str, pool: Sequence[str] | None, include: Sequence[str] = ()) -> UserTurn:
        """`text` with the documents of its top-k tools from `pool`, best first. Tools of `include` (in training:
        the gold tools) that were not retrieved replace the lowest-ranked others, at text-seeded positions."""
        hits = [tool_id for tool_id, _ in self.retriever.retrieve(text, self.k, pool=pool)]
        extra = [t for t in dict.fromkeys(include) if t not in hits]
        surplus = len(hits) + len(extra) - max(self.k, len(set(include)))
        dropped = [t for t in reversed(hits) if t not in include][:max(surplus, 0)]
        hits = [t for t in hits if t not in dropped]
        for tool_id in extra:
            hits.insert(int(hashlib.sha1(f"{text}\n{tool_id}".encode()).hexdigest(), 16) % (len(hits) + 1), tool_id)
        tools = [self.toolgen.catalog[t] for t in hits]
        names = [self.toolgen.indexing.code(t).removesuffix(END) for t in hits]
        return UserTurn(documents_message(text, tools, names), tuple(hits))

    def user_turns(self, task: Task) -> list[UserTurn]:
        return [self.user_turn(text, pool) for text, pool in task.turns]


def untuned_retrieve_read(catalog: ToolCatalog, base: str = SMOLLM2) -> ToolGenModel:
    """The base model with semantic codes over `catalog` (END and Finish added, nothing trained)."""
    model, tokenizer = load_base(base)
    return ToolGenModel.from_base(catalog, scheme="semantic", base=base, model=model, tokenizer=tokenizer)


def offered_pools(entry) -> list[tuple[str, ...]]:
    """The tools a BFCL entry offers at each turn: its pool, plus held-out functions from their turn on."""
    pools, offered = [], tuple(entry.pool)
    for turn in range(len(entry.turns)):
        offered += entry.held_out.get(turn, ())
        pools.append(offered)
    return pools


def retrieve_read_examples(system: RetrieveReadSystem, trajectories: Sequence[tuple[object, list | None]]) -> list:
    """Agent-tuning examples for the retrieve-read agent: training trajectories (core/examples.py) with each user
    message followed by its retrieved documents, gold tools included. Each trajectory comes with the tools offered
    at each of its turns (None: the whole catalog)."""
    from core.examples import TrainingTrajectory, trajectory_example

    examples = []
    for trajectory, pools in trajectories:
        turns = []
        for index, (text, steps) in enumerate(trajectory.turns):
            gold = [step.tool_id for step in steps if step.tool_id != FINISH]
            turns.append((system.user_turn(text, pools[index] if pools else None, include=gold).text, steps))
        examples.append(trajectory_example(system.toolgen, TrainingTrajectory(tuple(turns), trajectory.source)))
    return examples


def tune_retrieve_read(system: RetrieveReadSystem, corpus_name: str, data_dir: str | None, out: Path,
                       n_trajectories: int) -> dict:
    """Tune the retrieve-read agent on the trajectories ToolGen's agent stage samples from the same corpus (the
    build's preset and sample; documents in context, so sequences up to 1,024 tokens) and save it to `out`.
    Returns the training report; ValueError when the corpus has no agent trajectories."""
    from core.bfcl import BfclEntry
    from core.build import Preset, load_corpus, sample
    from core.bfcl_trajectories import bfcl_trajectory
    from core.examples import AGENT
    from core.train import Trainer

    preset, corpus = Preset(), load_corpus(corpus_name, data_dir)
    # the build's agent sources in its order: `Corpus.agent_entries`, then ready-made trajectories
    sources = list(corpus.agent_entries())
    sources += list(corpus.trajectories)
    if not sources:
        raise ValueError(f"--tune-baseline: the {corpus_name} corpus has no agent training trajectories")
    chosen = [(bfcl_trajectory(s, system.toolgen.catalog), offered_pools(s)) if isinstance(s, BfclEntry)
              else (s, None) for s in sample(sources, n_trajectories, 0)]
    examples = retrieve_read_examples(system, chosen)
    report = Trainer(system.toolgen, train_layers=preset.train_layers).train(
        examples, replace(preset.stages[AGENT], max_len=1024), AGENT)
    system.toolgen.info["stages"].append(AGENT)
    system.toolgen.info["reports"] = {AGENT: report}
    system.toolgen.save(out)
    return report


# ---------------------------------------------------------------- datasets

def _bfcl_calls(catalog: ToolCatalog, calls: Sequence[tuple[str, dict]]) -> list[tuple[str, dict]]:
    from core.bfcl import function_name

    return [(function_name(catalog[tool_id]), arguments) for tool_id, arguments in calls]


def bfcl_turn_texts(entry) -> list[str]:
    """The user text of each turn as agent tuning renders it: its user messages joined by a space, or
    CONTINUE_TEXT for a turn that only adds functions."""
    return [" ".join(m["content"] for m in messages if m.get("role") == "user") or CONTINUE_TEXT
            for messages in entry.turns]


def bfcl_single_tasks(catalog: ToolCatalog, split: str, categories: Sequence[str] | None) -> list[Task]:
    """One task per single-turn BFCL entry (AST and relevance categories)."""
    from core.bfcl import AST_CATEGORIES, RELEVANCE_CATEGORIES, load_bfcl_entries
    from core.executors.bfcl import BfclExecutor

    from .bfcl_checker import check_entry

    entries = load_bfcl_entries(categories or AST_CATEGORIES + RELEVANCE_CATEGORIES)
    if any(entry.kind not in ("ast", "irrelevance", "relevance") for entry in entries):
        raise ValueError("bfcl-single takes AST and relevance categories only")
    tasks = []
    for entry in _split_entries(entries, split):

        def score(trajectory: AgentTrace, entry=entry) -> dict[str, float]:
            calls = _bfcl_calls(catalog, trajectory.calls_by_turn()[0])
            if entry.kind == "ast" and "parallel" not in entry.category:
                calls = calls[:1]
            return {"correct": float(check_entry(entry, calls, catalog).valid)}

        tasks.append(Task(entry.id, "bfcl-single", [(bfcl_turn_texts(entry)[0], entry.pool)],
                          lambda: BfclExecutor({}, ()), score))
    return tasks


def bfcl_multi_tasks(catalog: ToolCatalog, split: str, categories: Sequence[str] | None) -> list[Task]:
    """One task per multi-turn BFCL entry, on live backends."""
    from core.bfcl import MULTI_TURN_CATEGORIES, load_bfcl_entries
    from core.executors.bfcl import BfclExecutor

    from .bfcl_checker import check_multi_turn

    entries = load_bfcl_entries(categories or MULTI_TURN_CATEGORIES)
    if any(entry.kind != "multi_turn" for entry in entries):
        raise ValueError("bfcl-multi takes multi-turn categories only")
    tasks = []
    for entry in _split_entries(entries, split):
        long_context = entry.category == "multi_turn_long_context"

        def score(trajectory: AgentTrace, entry=entry, long_context=long_context) -> dict[str, float]:
            attempted = 1 + max((e.turn for e in trajectory.events), default=0)
            model_turns = [_bfcl_calls(catalog, calls) for calls in trajectory.calls_by_turn()[:attempted]]
            passed = 0
            for count in range(1, len(entry.ground_truth) + 1):
                if count > len(model_turns) or not check_multi_turn(
                        model_turns[:count], entry.ground_truth[:count], entry.initial_config,
                        entry.involved_classes, long_context).valid:
                    break
                passed = count
            total = len(entry.ground_truth)
            return {"correct": float(passed == total), "turns_passed": passed / total}

        tasks.append(Task(entry.id, "bfcl-multi", list(zip(bfcl_turn_texts(entry), offered_pools(entry))),
                          lambda entry=entry, lc=long_context: BfclExecutor(entry.initial_config,
                                                                            entry.involved_classes, lc), score))
    return tasks


def _split_entries(entries: list, split: str) -> list:
    from core.splits import split_entries

    return entries if split == "all" else split_entries(entries).test


def toolbench_environment(cache_file: str | None) -> Callable[[], object]:
    """A factory of ToolBench simulators sharing one response cache (see core/executors/toolbench.py)."""
    from core.executors.toolbench import ResponseCache, ToolBenchSimulator

    cache = ResponseCache.load(cache_file) if cache_file else ResponseCache()
    return lambda: ToolBenchSimulator(cache)


def toolbench_tasks(catalog: ToolCatalog, query_files: Sequence[Path], split: str, pool: str,
                    cache_file: str | None) -> list[Task]:
    """One task per ToolBench query on the simulated environment."""
    from core.splits import split_queries
    from core.toolbench import load_toolbench_queries

    environment = toolbench_environment(cache_file)
    tasks = []
    for path in query_files:
        queries = load_toolbench_queries(path, catalog)
        for query in queries if split == "all" else split_queries(queries).test:

            def score(trajectory: AgentTrace, gold=query.gold) -> dict[str, float]:
                called = {tool_id for _, tool_id, _ in trajectory.calls}
                return {"gold_recall": len(called & set(gold)) / len(gold) if gold else 0.0}

            tasks.append(Task(query.id, f"toolbench:{Path(path).stem}",
                              [(query.text, query.pool if pool == "query" else None)], environment, score))
    return tasks


def toolbench_reference_tasks(catalog: ToolCatalog, answer_files: Sequence[Path], pool: str, cache_file: str | None,
                              excluded_texts: Sequence[str] = ()) -> list[Task]:
    """One task per GPT-3.5 reference answer that offers a catalog tool and whose normalised query is not one of
    `excluded_texts`; each carries the answer as its reference trajectory."""
    from core.splits import normalise

    from core.toolbench import function_index

    from .reference_answers import load_reference_answers

    environment, index = toolbench_environment(cache_file), function_index(catalog)
    excluded = {normalise(text) for text in excluded_texts}
    tasks = []
    for path in answer_files:
        for answer in load_reference_answers(path, catalog, index):
            if not answer.offered or normalise(answer.query) in excluded:
                continue

            def score(trajectory: AgentTrace, reference=answer.called) -> dict[str, float]:
                called = {tool_id for _, tool_id, _ in trajectory.calls}
                return {"reference_recall": len(called & set(reference)) / len(reference)} if reference else {}

            group = f"toolbench-reference:{answer.group}"
            tasks.append(Task(answer.query_id, group, [(answer.query, answer.offered if pool == "query" else None)],
                              environment, score, reference=answer.trajectory(group)))
    return tasks


# ---------------------------------------------------------------- running and scoring

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


def evaluate(system, tasks: Sequence[Task], config: AgentConfig,
             log=print) -> tuple[list[StoredTrajectory], list[str]]:
    """Run `system` on every task; the stored trajectories with their metrics, and the tasks skipped (why)."""
    stored, skipped = [], []
    for number, task in enumerate(tasks, start=1):
        start = time.perf_counter()
        try:
            trajectory = run_to_end(system.toolgen, system.user_turns(task), task.make_executor(), config=config)
        except ValueError as error:  # e.g. offered tools the model does not know
            skipped.append(f"{task.id}: {error}")
            continue
        seconds = time.perf_counter() - start
        offered = task.offered if task.offered is not None else set(system.toolgen.catalog.ids)
        metrics = {**trajectory_metrics(trajectory, offered), **task.score(trajectory), "seconds": seconds}
        stored.append(StoredTrajectory(system.name, task.group, task.id, task.turns[0][0],
                                       [e.to_dict() for e in trajectory.events], trajectory.final_answer or "",
                                       metrics))
        log(f"[{system.name}] {number}/{len(tasks)} {task.id}: "
            + " ".join(f"{k}={v:.2f}" for k, v in metrics.items()))
    return stored, skipped


def summarise(trajectories: Sequence[StoredTrajectory]) -> dict[str, dict]:
    """Mean and bootstrap 95% CI of every metric over the trajectories (metrics missing in some are skipped there)."""
    names = list(dict.fromkeys(name for t in trajectories for name in t.metrics))
    summary = {}
    for name in names:
        estimate = bootstrap_ci([t.metrics[name] for t in trajectories if name in t.metrics], n_resamples=2000)
        summary[name] = {"mean": estimate.mean, "ci_low": estimate.ci_low, "ci_high": estimate.ci_high,
                         "n": estimate.n}
    return summary


def store_once(store: ResultsStore, trajectories: Sequence[StoredTrajectory]) -> int:
    """Store the trajectories whose (system, dataset, query id) the store does not hold yet; how many it stored."""
    held = {(t.system, t.dataset, t.query_id) for dataset in {t.dataset for t in trajectories}
            for t in store.trajectories(dataset=dataset)}
    new = {}
    for trajectory in trajectories:
        key = (trajectory.system, trajectory.dataset, trajectory.query_id)
        if key not in held:
            new.setdefault(key, trajectory)
    store.add_trajectories(new.values())
    return len(new)


def build_tasks(args: argparse.Namespace, catalog: ToolCatalog) -> list[Task]:
    categories = [c.strip() for c in args.categories.split(",")] if args.categories else None
    if args.dataset == "bfcl-single":
        tasks = bfcl_single_tasks(catalog, args.split, categories)
    elif args.dataset == "bfcl-multi":
        tasks = bfcl_multi_tasks(catalog, args.split, categories)
    elif args.dataset == "toolbench-reference":
        from core.build import load_corpus

        data_dir = Path(args.data_dir)
        files = ([Path(f) for f in args.queries] if args.queries
                 else sorted((data_dir / "reference_answers").glob("*.json")))
        training = load_corpus("toolbench", data_dir).training_texts() if args.split == "test" else ()
        tasks = toolbench_reference_tasks(catalog, files, args.pool, args.cache, training)
    else:
        data_dir = Path(args.data_dir)
        files = [Path(f) for f in args.queries] if args.queries else sorted((data_dir / "queries").glob("*.json"))
        tasks = toolbench_tasks(catalog, files, args.split, args.pool, args.cache)
    from core.splits import spread

    return spread(tasks, args.limit) if args.limit else tasks


def load_catalog(args: argparse.Namespace) -> ToolCatalog:
    """The dataset's tool catalog (the retrieve-read agent's tools, and the ids tasks are written in)."""
    if args.dataset.startswith("toolbench"):
        from core.toolbench import load_toolbench_corpus

        return load_toolbench_corpus(Path(args.data_dir) / "corpus.json")
    from core.bfcl import load_bfcl_catalog

    return load_bfcl_catalog()


def make_retrieve_read(args: argparse.Namespace, catalog: ToolCatalog, corpus: str,
                       log) -> tuple[RetrieveReadSystem, bool]:
    """The retrieve-read system and whether its model was agent-tuned (see the module docstring)."""
    from core.examples import AGENT

    path = Path(args.baseline_model or MODELS_DIR / f"retrieve-read-{corpus}")
    if (path / "toolgen.json").exists():
        toolgen = ToolGenModel.load(path)
        return RetrieveReadSystem(toolgen, args.k), AGENT in toolgen.info.get("stages", [])
    system = RetrieveReadSystem(untuned_retrieve_read(catalog, args.base), args.k)
    if not args.tune_baseline:
        return system, False
    log(f"tuning the retrieve-read agent on {args.baseline_trajectories} {corpus} trajectories -> {path}")
    tune_retrieve_read(system, corpus, args.data_dir if corpus == "toolbench" else None, path,
                       args.baseline_trajectories)
    return system, True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from core.settings import TOOLBENCH_DATA_DIR

    parser.add_argument("--dataset", choices=DATASETS, required=True)
    parser.add_argument("--data-dir", default=str(TOOLBENCH_DATA_DIR), help="ToolBench data folder (toolbench*)")
    parser.add_argument("--queries", nargs="*", help="ToolBench query files (default: every file in DATA_DIR/queries); "
                                                      "toolbench-reference: reference-answer files (default: every "
                                                      "file in DATA_DIR/reference_answers)")
    parser.add_argument("--categories", help="BFCL categories, comma-separated (default: all of the dataset's)")
    parser.add_argument("--split", choices=("test", "all"), default="test")
    parser.add_argument("--pool", choices=("query", "catalog"), default="query",
                        help="toolbench*: offer the query's tools (api_list, or the answer's available tools) or "
                             "the whole catalog")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--model", help="ToolGen checkpoint (default: models/toolgen-<bfcl|toolbench>)")
    parser.add_argument("--baseline-model", help="retrieve-read checkpoint (default: models/retrieve-read-<corpus>)")
    parser.add_argument("--tune-baseline", action="store_true",
                        help="when the baseline checkpoint is missing, tune the base model and save it there")
    parser.add_argument("--baseline-trajectories", type=int, default=300,
                        help="agent trajectories the baseline is tuned on (ToolGen's default agent stage: 300)")
    parser.add_argument("--base", default=SMOLLM2, help="base model of an untuned or newly tuned retrieve-read agent")
    parser.add_argument("--k", type=int, default=5, help="tools the retrieve-read agent retrieves per user message")
    parser.add_argument("--max-steps", type=int, default=AgentConfig.max_steps, help="assistant turns per user turn")
    parser.add_argument("--max-thought-tokens", type=int, default=AgentConfig.max_thought_tokens)
    parser.add_argument("--max-argument-tokens", type=int, default=AgentConfig.max_argument_tokens)
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
    catalog = load_catalog(args)
    tasks = build_tasks(args, catalog)
    config = AgentConfig(max_steps=args.max_steps, max_thought_tokens=args.max_thought_tokens,
                         max_argument_tokens=args.max_argument_tokens, probe_unconstrained=True)
    corpus = "toolbench" if args.dataset.startswith("toolbench") else "bfcl"
    setting = f"pool={args.pool}" if corpus == "toolbench" else "offered-functions"
    log = (lambda message: None) if args.json else print
    report = {}
    with ResultsStore(args.db) as store:
        references = [task.reference for task in tasks if task.reference is not None]
        if references:
            added = store_once(store, references)
            report[references[0].system] = {"tasks": len(references), "stored_now": added, "skipped": [],
                                            **{n: round(s["mean"], 4) for n, s in summarise(references).items()}}
        for name in systems:
            if name == "toolgen":
                system, tuned = ToolGenSystem(ToolGenModel.load(args.model or MODELS_DIR / f"toolgen-{corpus}")), True
            else:
                system, tuned = make_retrieve_read(args, catalog, corpus, log)
            trajectories, skipped = evaluate(system, tasks, config, log)
            store.add_trajectories(trajectories)
            summary = summarise(trajectories)
            store.add_run(name, args.dataset, metrics=[MetricValue(f"agent_{n}", s["mean"], s["ci_low"], s["ci_high"])
                                                      for n, s in summary.items()],
                          config={"system": name, "model": args.model, "base": args.base, "k": args.k,
                                  "agent": asdict(config), "tasks": len(trajectories), "skipped": len(skipped),
                                  "tuned": tuned, "cores": os.cpu_count()},
                          setting=setting, split=args.split)
            report[name] = {"tasks": len(trajectories), "skipped": skipped[:5], "n_skipped": len(skipped),
                            **{n: round(s["mean"], 4) for n, s in summary.items()}}
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        for name, values in report.items():
            print(f"{name:14s} " + "  ".join(f"{k}={v}" for k, v in values.items() if k != "skipped"))
            for reason in values["skipped"]:
                print(f"  skipped {reason}")
    return 0
