"""The agent evaluation's datasets: each builds `Task`s (user turns with their offered tools, an executor
factory and a scorer of the finished trajectory). `--split test`, the default, keeps the held-out test side of
core/splits.py; `--split all` keeps every task.

- bfcl-single: BFCL's AST and relevance categories. The calls made before Finish are checked with
  eval/bfcl_checker: the first call for simple and multiple categories, every call for parallel ones, and for
  relevance whether any call was made (irrelevance is correct only when none is). Calls run on a BfclExecutor
  without backends: the observation says whether the arguments fit the schema.
- bfcl-multi: BFCL's multi-turn categories on live backends (the entry's initial config). The model's calls of
  each turn and the ground truth are replayed on fresh backends (state and responses per turn): `correct` is BFCL's
  task accuracy, `turns_passed` the share of turns passed before the first failure. Held-out functions join the
  offered tools at their turn. User turns are rendered as in agent tuning (core/examples.py).
- toolbench: the visible query files on the simulated environment (core/executors/toolbench.py): `gold_recall`
  (share of the gold APIs called). `pool="query"` offers the query's api_list, `"catalog"` the whole catalog
  (the paper's unfiltered setting).
- toolbench-reference: the queries of the GPT-3.5 reference answers (read by eval/reference_answers.py) on the
  same environment. `pool="query"` offers the answer's available tools that resolve to catalog tools (answers with
  none are left out); queries whose normalised text is among `excluded_texts` (ToolGen's training queries) are left
  out. `reference_recall`: share of the resolved tools GPT-3.5 called that the system called too (absent when it
  called none). Each task carries the GPT-3.5 answer as its reference trajectory (system `gpt-3.5-reference`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from core.agent import AgentTrace
from core.bfcl import (
    AST_CATEGORIES,
    MULTI_TURN_CATEGORIES,
    RELEVANCE_CATEGORIES,
    BfclEntry,
    function_name,
    load_bfcl_entries,
)
from core.bfcl_trajectories import CONTINUE_TEXT
from core.executors.bfcl import BfclExecutor
from core.executors.toolbench import ResponseCache, ToolBenchSimulator
from core.splits import normalise, split_entries, split_queries
from core.toolbench import function_index, load_toolbench_queries
from core.tools import ToolCatalog

from .bfcl_checker import check_entry, check_multi_turn
from .reference_answers import load_reference_answers
from .store import StoredTrajectory

DATASETS = ("bfcl-single", "bfcl-multi", "toolbench", "toolbench-reference")


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


def offered_pools(entry: BfclEntry) -> list[tuple[str, ...]]:
    """The tools a BFCL entry offers at each turn: its pool, plus held-out functions from their turn on."""
    pools, offered = [], tuple(entry.pool)
    for turn in range(len(entry.turns)):
        offered += entry.held_out.get(turn, ())
        pools.append(offered)
    return pools


def bfcl_turn_texts(entry: BfclEntry) -> list[str]:
    """The user text of each turn as agent tuning renders it: its user messages joined by a space, or
    CONTINUE_TEXT for a turn that only adds functions."""
    return [
        " ".join(m["content"] for m in messages if m.get("role") == "user") or CONTINUE_TEXT for messages in entry.turns
    ]


def _bfcl_calls(catalog: ToolCatalog, calls: Sequence[tuple[str, dict]]) -> list[tuple[str, dict]]:
    return [(function_name(catalog[tool_id]), arguments) for tool_id, arguments in calls]


def _split_entries(entries: list[BfclEntry], split: str) -> list[BfclEntry]:
    """The entries of `split`: "test" (held out), "train" (for choosing settings), or "all"."""
    if split == "all":
        return entries
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}: choose train, test or all")
    return getattr(split_entries(entries), split)


def bfcl_single_tasks(catalog: ToolCatalog, split: str, categories: Sequence[str] | None) -> list[Task]:
    """One task per single-turn BFCL entry (AST and relevance categories)."""
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

        tasks.append(
            Task(
                entry.id, "bfcl-single", [(bfcl_turn_texts(entry)[0], entry.pool)], lambda: BfclExecutor({}, ()), score
            )
        )
    return tasks


def bfcl_multi_tasks(catalog: ToolCatalog, split: str, categories: Sequence[str] | None) -> list[Task]:
    """One task per multi-turn BFCL entry, on live backends."""
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
                if (
                    count > len(model_turns)
                    or not check_multi_turn(
                        model_turns[:count],
                        entry.ground_truth[:count],
                        entry.initial_config,
                        entry.involved_classes,
                        long_context,
                    ).valid
                ):
                    break
                passed = count
            total = len(entry.ground_truth)
            return {"correct": float(passed == total), "turns_passed": passed / total}

        tasks.append(
            Task(
                entry.id,
                "bfcl-multi",
                list(zip(bfcl_turn_texts(entry), offered_pools(entry))),
                lambda entry=entry, lc=long_context: BfclExecutor(entry.initial_config, entry.involved_classes, lc),
                score,
            )
        )
    return tasks


def toolbench_environment(cache_file: str | None) -> Callable[[], ToolBenchSimulator]:
    """A factory of ToolBench simulators sharing one response cache (see core/executors/toolbench.py)."""
    cache = ResponseCache.load(cache_file) if cache_file else ResponseCache()
    return lambda: ToolBenchSimulator(cache)


def toolbench_tasks(
    catalog: ToolCatalog, query_files: Sequence[Path], split: str, pool: str, cache_file: str | None
) -> list[Task]:
    """One task per ToolBench query on the simulated environment."""
    environment = toolbench_environment(cache_file)
    tasks = []
    for path in query_files:
        queries = load_toolbench_queries(path, catalog)
        for query in queries if split == "all" else split_queries(queries).test:

            def score(trajectory: AgentTrace, gold=query.gold) -> dict[str, float]:
                called = {tool_id for _, tool_id, _ in trajectory.calls}
                return {"gold_recall": len(called & set(gold)) / len(gold) if gold else 0.0}

            tasks.append(
                Task(
                    query.id,
                    f"toolbench:{Path(path).stem}",
                    [(query.text, query.pool if pool == "query" else None)],
                    environment,
                    score,
                )
            )
    return tasks


def toolbench_reference_tasks(
    catalog: ToolCatalog,
    answer_files: Sequence[Path],
    pool: str,
    cache_file: str | None,
    excluded_texts: Sequence[str] = (),
) -> list[Task]:
    """One task per GPT-3.5 reference answer that offers a catalog tool and whose normalised query is not one of
    `excluded_texts`; each carries the answer as its reference trajectory."""
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
            tasks.append(
                Task(
                    answer.query_id,
                    group,
                    [(answer.query, answer.offered if pool == "query" else None)],
                    environment,
                    score,
                    reference=answer.trajectory(group),
                )
            )
    return tasks
