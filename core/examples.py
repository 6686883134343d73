"""Training examples of the three ToolGen stages, as token ids with a loss mask.

Every builder returns `Example`s: the full token sequence and, per token, whether it is a target (the loss
is taken on those tokens only). Sequences are concatenations of ids from `core.prompts` (the token format) and
`ToolGenModel.code_ids`, never re-tokenized joined strings.

- Stage 1, memorization: `tool.document()` -> the tool's code, one example per catalog tool.
- Stage 2, retrieval: a training query -> each of its gold tools' codes, plus template queries made from
  the documentation (`core.synthetic_queries`).
- Stage 3, agent tuning: a `TrainingTrajectory` (user turns, each with its `Step`s) rendered in the agent
  format; the loss covers the assistant turns only. Trajectories come from BFCL ground truth
  (`core.bfcl_trajectories`) and ToolBench answers or templates (`core.toolbench`); both use the templated
  steps here (`call_thought`, `finish_step`).
Test queries must never reach these builders: callers split first (`core.splits`) and check for leaks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .bfcl import function_name
from .indexing import FINISH
from .prompts import (
    Step,
    agent_prompt,
    assistant_turn_parts,
    memorization_prompt,
    observation_ids,
    retrieval_prompt,
    truncate_tokens,
    user_turn_ids,
)
from .synthetic_queries import paired_queries, synthetic_queries, tool_task
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
    text: str = ""  # the query or document the example was made from (for leak checks)

    def __post_init__(self):
        if len(self.ids) != len(self.mask):
            raise ValueError(f"{self.stage} example: {len(self.ids)} ids but {len(self.mask)} mask entries")
        if not any(self.mask[1:]):
            raise ValueError(f"{self.stage} example {self.text[:60]!r}: no target token after the first position")

    @property
    def targets(self) -> list[int]:
        """The target token ids, in order."""
        return [token for token, scored in zip(self.ids, self.mask) if scored]


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


def retrieval_queries(
    catalog,
    queries: Iterable[Query],
    synthetic_per_tool: int = 2,
    synthetic_for: str = "missing",
    pairs_per_tool: int = 0,
    seed: int = 0,
) -> list[Query]:
    """The retrieval stage's queries: the training `queries`, then synthetic ones.

    synthetic_for: "missing" gives `synthetic_per_tool` synthetic queries (`synthetic_queries`) to the
    catalog tools that no query names as gold; "all" gives them to every tool; "none" adds none.
    pairs_per_tool: two-intent synthetic queries per tool (`paired_queries`).
    """
    if synthetic_for not in ("missing", "all", "none"):
        raise ValueError(f"synthetic_for must be 'missing', 'all' or 'none', got {synthetic_for!r}")
    queries = list(queries)
    covered = {tool_id for query in queries for tool_id in query.gold}
    if synthetic_for != "none":
        queries += [
            Query(id=f"synthetic:{tool.id}:{n}", text=text, gold=(tool.id,), source="synthetic")
            for tool in catalog
            if synthetic_for == "all" or tool.id not in covered
            for n, text in enumerate(synthetic_queries(tool, synthetic_per_tool, seed))
        ]
    return queries + paired_queries(catalog, pairs_per_tool, seed)


def retrieval_examples(
    toolgen,
    queries: Iterable[Query],
    synthetic_per_tool: int = 2,
    synthetic_for: str = "missing",
    pairs_per_tool: int = 0,
    seed: int = 0,
    max_query_tokens: int | None = None,
) -> list[Example]:
    """Each query of `retrieval_queries` (same arguments) -> each of its gold tools' codes; the query text is cut to
    `max_query_tokens` in the prompt. Gold tools outside the catalog raise KeyError."""
    examples = []
    for query in retrieval_queries(toolgen.catalog, queries, synthetic_per_tool, synthetic_for, pairs_per_tool, seed):
        prompt = retrieval_prompt(toolgen.tokenizer, truncate_tokens(toolgen.tokenizer, query.text, max_query_tokens))
        examples += [
            _prompt_and_code(prompt, toolgen.code_ids(tool_id), RETRIEVAL, tool_id, query.text)
            for tool_id in query.gold
        ]
    return examples


# ---------------------------------------------------------------- stage 3: agent trajectories


@dataclass(frozen=True)
class TrainingTrajectory:
    """A solved task: user turns, each followed by the assistant's steps (the last one a Finish)."""

    turns: tuple[tuple[str, tuple[Step, ...]], ...]
    source: str = ""


def trajectory_example(
    toolgen, trajectory: TrainingTrajectory, max_observation_chars: int = 300, documented: bool = False
) -> Example:
    """Render a trajectory in the agent format; the mask covers what the assistant writes only.

    `documented`: each tool call reads the tool's documentation before its Action Input (core/prompts.py)."""
    tokenizer = toolgen.tokenizer
    ids: list[int] = []
    mask: list[bool] = []

    def add(part: list[int], scored: bool) -> None:
        ids.extend(part)
        mask.extend([scored] * len(part))

    for index, (user_text, steps) in enumerate(trajectory.turns):
        add(agent_prompt(tokenizer, user_text) if index == 0 else user_turn_ids(tokenizer, user_text), False)
        for number, step in enumerate(steps):
            for part, written in assistant_turn_parts(toolgen, step, documented):
                add(part, written)
            if step.tool_id != FINISH:
                add(observation_ids(tokenizer, step.observation[:max_observation_chars]), False)
            elif number != len(steps) - 1:
                raise ValueError(f"trajectory {trajectory.source}: Finish before the last step of a turn")
    first_user = trajectory.turns[0][0] if trajectory.turns else ""
    return Example(tuple(ids), tuple(mask), AGENT, "", first_user)


def call_thought(tool: Tool) -> str:
    """The templated thought before calling `tool`."""
    name, task = function_name(tool), tool_task(tool)
    return f"I should use {name} to {task}." if task else f"I should use {name}."


FINISH_THOUGHT = "I have what I need to answer."


def finish_step(thought: str, answer: str) -> Step:
    """The last step of a turn: `<<Finish>>` with `answer` as its final answer."""
    return Step(thought, FINISH, {"final_answer": answer})
