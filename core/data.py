"""Training examples of the three ToolGen stages, as token ids with a loss mask.

Every builder returns `Example`s: the full token sequence and, per token, whether it is a target (the loss
is taken on those tokens only). Sequences are concatenations of ids from `core.prompts` and
`ToolGenModel.code_ids`, never re-tokenized joined strings.

- Stage 1, memorization: `tool.document()` -> the tool's code, one example per catalog tool.
- Stage 2, retrieval: a training query -> each of its gold tools' codes, plus template queries made from
  the documentation: `synthetic_queries` (one tool) and `paired_queries` (two tools in one request).
- Stage 3, agent tuning: ReAct trajectories (`Step`s) rendered in the agent format of `core.prompts`; the
  loss covers the assistant turns only. `bfcl_trajectory` builds them from BFCL ground truth, executing
  multi-turn calls on the real backends. ToolBench trajectories are mostly synthetic (see core/toolbench.py).
Test queries must never reach these builders: callers split first (`core.splits`) and check for leaks.
"""
from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from .bfcl import BfclEntry, function_name, parse_call
from .executors import BfclExecutor
from .indexing import FINISH
from .prompts import (Step, agent_prompt, assistant_turn_ids, format_arguments, memorization_prompt, observation_ids,
                      retrieval_prompt, truncate_tokens, user_turn_ids)
from .splits import entry_texts
from .tools import Query, Tool

MEMORIZATION, RETRIEVAL, AGENT = "memorization", "retrieval", "agent"
STAGES = (MEMORIZATION, RETRIEVAL, AGENT)


@dataclass(frozen=True)
class Example:
    """One training sequence. `mask[i]` is True when `ids[i]` is a target (predicted from `ids[:i]`)."""

    ids: tuple[int, ...]
    mask: tuple[bool, ...]
    stage: str
    tool_id: str = ""  # the gold tool (memorization and retrieval examples)
    text: str = ""     # the query or document the example was made from (for leak checks)

    def __post_init__(self):
        if len(self.ids) != len(self.mask):
            raise ValueError(f"{self.stage} example: {len(self.ids)} ids but {len(self.mask)} mask entries")
        if not any(self.mask[1:]):
            raise ValueError(f"{self.stage} example {self.text[:60]!r}: no target token after the first position")

    @property
    def targets(self) -> list[int]:
        """The target token ids, in order."""
        return [token for token, scored in zip(self.ids, self.mask) if scored]


def spread(items: Sequence, n: int) -> list:
    """At most n items, evenly spaced over the sequence (deterministic)."""
    if len(items) <= n:
        return list(items)
    return [items[i * len(items) // n] for i in range(n)]


def _prompt_and_code(prompt: list[int], code: Sequence[int], stage: str, tool_id: str, text: str) -> Example:
    return Example(tuple(prompt) + tuple(code), (False,) * len(prompt) + (True,) * len(code), stage, tool_id, text)


# ---------------------------------------------------------------- stage 1: memorization

def memorization_examples(toolgen, max_doc_tokens: int | None = None) -> list[Example]:
    """One example per catalog tool: its documentation (cut to `max_doc_tokens`) -> its code."""
    examples = []
    for tool in toolgen.catalog:
        document = truncate_tokens(toolgen.tokenizer, tool.document(), max_doc_tokens)
        prompt = memorization_prompt(toolgen.tokenizer, document)
        examples.append(_prompt_and_code(prompt, toolgen.code_ids(tool.id), MEMORIZATION, tool.id, document))
    return examples


# ---------------------------------------------------------------- stage 2: retrieval

def _words(name: str) -> str:
    """An identifier as plain words: `get_stock_price` / `getStockPrice` / `/v1/stock` -> `get stock price`."""
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name.split("#", 1)[0].rsplit(".", 1)[-1])
    return " ".join(re.sub(r"[^0-9A-Za-z]+", " ", name).split()).lower()


def _first_sentence(text: str, max_words: int = 24) -> str:
    sentence = re.split(r"(?<=[.!?])\s", " ".join(text.split()), maxsplit=1)[0].rstrip(".!? ")
    return " ".join(sentence.split()[:max_words])


def _task(tool: Tool, max_words: int = 24) -> str:
    """What the tool does: the first sentence of its description (after BFCL's "Tool description:"), without
    a leading "This function/tool/API"."""
    task = _first_sentence(tool.description.split("Tool description:", 1)[-1], max_words)
    return _SUBJECT.sub("", task)


_SUBJECT = re.compile(r"^(this|the) (function|tool|api|endpoint|method) (will )?", re.IGNORECASE)


_NOT_VERBS = {"this", "is", "was", "has", "its", "news", "status", "access", "process", "analysis"}


def _imperative(task: str) -> str:
    """`Retrieves the list` -> `retrieve the list`: lower-case first letter, third-person verb to base form."""
    if not task:
        return task
    first, _, rest = task.partition(" ")
    word = first.lower() if not first[1:2].isupper() else first
    if word.isalpha() and word not in _NOT_VERBS and len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        if word.endswith("ies"):
            word = word[:-3] + "y"
        elif word.endswith(("ches", "shes", "sses", "xes")):
            word = word[:-2]
        else:
            word = word[:-1]
    return f"{word} {rest}".strip()


# Templates over: {Task} what the tool does, {task} the same as an imperative, {api} and {tool} the api
# and tool names as words (a leading get/fetch/retrieve dropped from {api}), {params} up to two parameter
# names as words. BFCL's catch-all namespace "bfcl" says nothing, so the {tool} templates skip it.
_TEMPLATES_WITH_TASK = (
    "{Task}.",
    "I need to {task}.",
    "Can you {task}?",
    "Please help me: {task}.",
    "I want to use {tool} to {task}.",
    "{Task}. My {params} {are} given.",
)
_TEMPLATES_WITHOUT_TASK = (
    "Use {tool} to get the {api}.",
    "I need the {api} from {tool}.",
    "Can you get me the {api}?",
    "Find the {api} for my {params}.",
)


def synthetic_queries(tool: Tool, n: int, seed: int = 0) -> list[str]:
    """Up to `n` distinct template queries for `tool`, made from its documentation.

    Method: fill the templates above with what the tool does (`_task`: the description's first sentence, at
    most 24 words; as an imperative in "to {task}" positions), its
    api and tool names as words and up to two parameter names; the templates needing a description are used
    only when it has one, the parameter templates only when it has parameters. `n` templates are drawn
    without replacement with `random.Random(sha1(f"{seed}:{tool.id}"))`, so a tool's queries do not depend
    on the rest of the catalog.
    """
    task = _task(tool)
    params = [_words(p) for p in (tool.parameters.get("properties") or {})][:2]
    fields = {"task": _imperative(task), "Task": task[:1].upper() + task[1:],
              "api": re.sub(r"^(get|fetch|retrieve) ", "", _words(tool.api_name)),
              "tool": _words(tool.tool_name) or tool.tool_name, "params": " and ".join(params),
              "are": "are" if len(params) > 1 else "is"}
    templates = [t for t in (_TEMPLATES_WITH_TASK if task else ()) + _TEMPLATES_WITHOUT_TASK
                 if (params or "{params}" not in t) and (tool.tool_name != "bfcl" or "{tool}" not in t)]
    rng = random.Random(hashlib.sha1(f"{seed}:{tool.id}".encode("utf-8")).hexdigest())
    chosen = rng.sample(templates, min(n, len(templates)))
    return list(dict.fromkeys(template.format(**fields) for template in chosen))


_PAIR_TEMPLATES = (
    "Can you {a}? Additionally, I would like to {b}.",
    "I need to {a} and {b}.",
    "Please {a}. Also, {b}.",
    "Help me {a}, then {b}.",
)


def _request(tool: Tool) -> str:
    """What the tool does as an imperative, or "get the <api name>" when it has no description."""
    return _imperative(_task(tool, max_words=16)) or f"get the {_words(tool.api_name)}"


def paired_queries(catalog, per_tool: int, seed: int = 0) -> list[Query]:
    """Two-intent synthetic queries like the real multi-tool requests: each tool is asked for together with
    `per_tool` partners, drawn (seeded by the tool id) from the tools sharing its tool name, else its
    category, else the whole catalog; one of the templates above joins the two requests. Gold: both tools."""
    groups: dict[str, list[str]] = {}
    for tool in catalog:
        groups.setdefault(f"tool:{tool.tool_name}", []).append(tool.id)
        groups.setdefault(f"category:{tool.category}", []).append(tool.id)
    queries = []
    for tool in catalog:
        rng = random.Random(hashlib.sha1(f"pair:{seed}:{tool.id}".encode("utf-8")).hexdigest())
        partners = next((ids for ids in (groups[f"tool:{tool.tool_name}"], groups[f"category:{tool.category}"],
                                         catalog.ids) if len(ids) > 1), [])
        for number in range(per_tool if len(partners) > 1 else 0):
            partner = catalog[rng.choice([p for p in partners if p != tool.id])]
            text = rng.choice(_PAIR_TEMPLATES).format(a=_request(tool), b=_request(partner))
            queries.append(Query(id=f"pair:{tool.id}:{number}", text=text, gold=(tool.id, partner.id),
                                 source="synthetic"))
    return queries


def retrieval_examples(toolgen, queries: Iterable[Query], synthetic_per_tool: int = 2,
                       synthetic_for: str = "missing", pairs_per_tool: int = 0, seed: int = 0,
                       max_query_tokens: int | None = None) -> list[Example]:
    """Training queries -> each gold tool's code, plus synthetic queries.

    synthetic_for: "missing" gives `synthetic_per_tool` synthetic queries (`synthetic_queries`) to the
    catalog tools that no query names as gold; "all" gives them to every tool; "none" adds none.
    pairs_per_tool: two-intent synthetic queries per tool (`paired_queries`). Gold tools outside the
    catalog raise KeyError.
    """
    if synthetic_for not in ("missing", "all", "none"):
        raise ValueError(f"synthetic_for must be 'missing', 'all' or 'none', got {synthetic_for!r}")
    queries = list(queries)
    covered = {tool_id for query in queries for tool_id in query.gold}
    if synthetic_for != "none":
        queries += [Query(id=f"synthetic:{tool.id}:{n}", text=text, gold=(tool.id,), source="synthetic")
                    for tool in toolgen.catalog if synthetic_for == "all" or tool.id not in covered
                    for n, text in enumerate(synthetic_queries(tool, synthetic_per_tool, seed))]
    queries += paired_queries(toolgen.catalog, pairs_per_tool, seed)
    examples = []
    for query in queries:
        prompt = retrieval_prompt(toolgen.tokenizer, truncate_tokens(toolgen.tokenizer, query.text, max_query_tokens))
        examples += [_prompt_and_code(prompt, toolgen.code_ids(tool_id), RETRIEVAL, tool_id, query.text)
                     for tool_id in query.gold]
    return examples


# ---------------------------------------------------------------- stage 3: agent trajectories

@dataclass(frozen=True)
class Trajectory:
    """A solved task: user turns, each followed by the assistant's steps (the last one a Finish)."""

    turns: tuple[tuple[str, tuple[Step, ...]], ...]
    source: str = ""


def trajectory_example(toolgen, trajectory: Trajectory, max_observation_chars: int = 300) -> Example:
    """Render a trajectory in the agent format; the mask covers the assistant turns only."""
    tokenizer = toolgen.tokenizer
    ids: list[int] = []
    mask: list[bool] = []

    def add(part: list[int], scored: bool) -> None:
        ids.extend(part)
        mask.extend([scored] * len(part))

    for index, (user_text, steps) in enumerate(trajectory.turns):
        add(agent_prompt(tokenizer, user_text) if index == 0 else user_turn_ids(tokenizer, user_text), False)
        for number, step in enumerate(steps):
            add(assistant_turn_ids(toolgen, step), True)
            if step.tool_id != FINISH:
                add(observation_ids(tokenizer, step.observation[:max_observation_chars]), False)
            elif number != len(steps) - 1:
                raise ValueError(f"trajectory {trajectory.source}: Finish before the last step of a turn")
    first_user = trajectory.turns[0][0] if trajectory.turns else ""
    return Example(tuple(ids), tuple(mask), AGENT, "", first_user)


def call_thought(tool: Tool) -> str:
    """The templated thought before calling `tool`."""
    name, task = function_name(tool), _imperative(_task(tool, max_words=16))
    return f"I should use {name} to {task}." if task else f"I should use {name}."


FINISH_THOUGHT = "I have what I need to answer."
NO_TOOL_THOUGHT = "None of my tools fits this request."
NO_TOOL_ANSWER = "I cannot help with this using the available tools."
MISSING_INFO_THOUGHT = "I cannot complete this request as asked."
MISSING_INFO_ANSWER = "I cannot do this yet: a needed tool or detail is missing. Please tell me more."
CONTINUE_TEXT = "Continue."  # the user text of a BFCL turn that only adds functions


def finish_step(thought: str, answer: str) -> Step:
    """The last step of a turn: `<<Finish>>` with `answer` as its final answer."""
    return Step(thought, FINISH, {"final_answer": answer})


def _first_acceptable(values: object) -> object:
    """BFCL ground truth lists acceptable values per parameter ("" = may be left out); nested dicts too."""
    value = values[0] if isinstance(values, list) and values else values
    if isinstance(value, dict):
        picked = {key: _first_acceptable(inner) for key, inner in value.items()}
        return {key: inner for key, inner in picked.items() if inner != ""}
    return value


def _call_steps(executor: BfclExecutor, catalog, calls: list[tuple[str, dict]]) -> list[Step]:
    """Execute calls (tool id, arguments) in order; one Step each, with the real observation."""
    steps = []
    for tool_id, arguments in calls:
        tool = catalog[tool_id]
        observation = executor.call(tool, arguments)
        steps.append(Step(call_thought(tool), tool_id, arguments, observation.content))
    return steps


def _calls_answer(steps: list[Step], catalog) -> str:
    """Final answer of a single-turn task: the calls made (their backends are not executable here)."""
    return "Called " + "; ".join(f"{function_name(catalog[s.tool_id])}({format_arguments(s.arguments)})"
                                 for s in steps) + "."


def bfcl_trajectory(entry: BfclEntry, catalog, max_answer_chars: int = 300) -> Trajectory | None:
    """The ground-truth trajectory of a BFCL entry, its calls executed on a fresh `BfclExecutor`.

    Single-turn AST entries: the ground-truth calls (first acceptable value of each parameter), then Finish
    listing the calls. Irrelevance entries: Finish right away. Multi-turn entries: per turn, the ground-truth
    calls run on the entry's backends (initial config from the entry), then Finish with the last
    observation (a turn with no user message, which only adds functions, gets CONTINUE_TEXT); a turn without
    ground-truth calls (missing function or parameter) finishes with a request for what is missing. Relevance and agentic entries (no ground-truth calls) give None.
    """
    texts = entry_texts(entry)
    if entry.kind == "irrelevance":
        return Trajectory(((texts[0], (finish_step(NO_TOOL_THOUGHT, NO_TOOL_ANSWER),)),), entry.id)
    if entry.kind == "ast":
        by_name = {function_name(catalog[t]): t for t in entry.pool}
        calls = [(by_name[name], _first_acceptable([params]))
                 for item in entry.ground_truth for name, params in item.items()]
        steps = _call_steps(BfclExecutor({}, ()), catalog, calls)
        final = finish_step(FINISH_THOUGHT, _calls_answer(steps, catalog)[:max_answer_chars])
        return Trajectory(((texts[0], tuple(steps) + (final,)),), entry.id)
    if entry.kind != "multi_turn":
        return None
    executor = BfclExecutor(entry.initial_config, entry.involved_classes,
                            long_context=entry.category.endswith("long_context"))
    offered = {function_name(catalog[t]): t
               for t in entry.pool + tuple(t for ids in entry.held_out.values() for t in ids)}
    turns = []
    for messages, calls_text in zip(entry.turns, entry.ground_truth):
        user = " ".join(m["content"] for m in messages if m.get("role") == "user")
        calls = [(offered[name], arguments) for text in calls_text
                 for name, arguments in parse_call(text, executor.param_order)]
        steps = _call_steps(executor, catalog, calls)
        if not user:  # a turn that only adds functions: its calls continue the previous turn's answer
            user = CONTINUE_TEXT
        final = (finish_step(FINISH_THOUGHT, steps[-1].observation[:max_answer_chars]) if steps
                 else finish_step(MISSING_INFO_THOUGHT, MISSING_INFO_ANSWER))
        turns.append((user, tuple(steps) + (final,)))
    return Trajectory(tuple(turns), entry.id)


def bfcl_agent_examples(toolgen, entries: Iterable[BfclEntry], max_observation_chars: int = 300) -> list[Example]:
    """Stage 3 examples from BFCL training entries (see `bfcl_trajectory`); entries without one are skipped."""
    examples = []
    for entry in entries:
        trajectory = bfcl_trajectory(entry, toolgen.catalog, max_observation_chars)
        if trajectory is not None:
            examples.append(trajectory_example(toolgen, trajectory, max_observation_chars))
    return examples
