"""The two systems of the agent evaluation. Both run the same agent loop (core/agent.py) on a `ToolGenModel`
held in `.model`; they differ in what the model reads and in which codes its actions are decoded over.

- toolgen: the ToolGen checkpoint; actions are decoded over the codes of the offered tools.
- retrieve-read: the paradigm ToolGen is compared with. BM25 picks the top `k` offered tools for each user
  message, their documentation is appended to that message, and a base model acts. Its action is constrained to
  the retrieved tools' names in ordinary tokens (semantic codes `tool_name: api_name<<end>>`), so its calls are
  checked exactly like ToolGen's. Its model is the untuned base (`untuned_retrieve_read`) or one trained by
  `python -m eval train-baseline --kind retrieve-read` (eval/train_baseline.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from core.agent import UserTurn
from core.indexing import END
from core.model import SMOLLM2, ToolGenModel, load_base
from core.tools import Tool, ToolCatalog

from .retrievers import BM25Retriever

# a conversation to run: (user text, tool ids offered from that turn on, or None for the whole catalog) per turn
Turns = Sequence[tuple[str, Sequence[str] | None]]


class ToolGenSystem:
    """The ToolGen checkpoint, acting over the offered tools' codes."""

    name = "toolgen"

    def __init__(self, model: ToolGenModel):
        self.model = model

    def user_turns(self, turns: Turns) -> list[UserTurn]:
        """The user turns as the agent reads them: the texts, each with its offered tools."""
        return [UserTurn(text, pool) for text, pool in turns]


def documents_message(text: str, tools: Sequence[Tool], names: Sequence[str]) -> str:
    """A user message followed by the documentation of `tools`, each under the action name to write."""
    docs = "\n\n".join(f"Action name: {name}\n{tool.document()}" for tool, name in zip(tools, names))
    return f"{text}\n\nTools you can use (write the Action as the tool's action name):\n\n{docs}"


class RetrieveReadSystem:
    """BM25 top-k tools with their documents in the user message; the action is constrained to their names.

    `model` is a semantic-code model (`tool_name: api_name<<end>>` in ordinary tokens), not a ToolGen one.
    """

    name = "retrieve-read"

    def __init__(self, model: ToolGenModel, k: int = 5):
        if model.indexing.scheme != "semantic":
            raise ValueError(f"the retrieve-read agent needs semantic codes, got {model.indexing.scheme!r}")
        self.model, self.k = model, k
        self.retriever = BM25Retriever(model.catalog)

    def user_turn(self, text: str, pool: Sequence[str] | None, include: Sequence[str] = ()) -> UserTurn:
        """`text` with the documents of its top-k tools from `pool`, best first. Tools of `include` (in training:
        the gold tools) that were not retrieved replace the lowest-ranked others, at text-seeded positions."""
        hits = [tool_id for tool_id, _ in self.retriever.retrieve(text, self.k, pool=pool)]
        extra = [t for t in dict.fromkeys(include) if t not in hits]
        surplus = len(hits) + len(extra) - max(self.k, len(set(include)))
        dropped = [t for t in reversed(hits) if t not in include][: max(surplus, 0)]
        hits = [t for t in hits if t not in dropped]
        for tool_id in extra:
            hits.insert(int(hashlib.sha1(f"{text}\n{tool_id}".encode()).hexdigest(), 16) % (len(hits) + 1), tool_id)
        tools = [self.model.catalog[t] for t in hits]
        names = [self.model.indexing.code(t).removesuffix(END) for t in hits]
        return UserTurn(documents_message(text, tools, names), tuple(hits))

    def user_turns(self, turns: Turns) -> list[UserTurn]:
        """Every user text followed by its retrieved documents."""
        return [self.user_turn(text, pool) for text, pool in turns]


def untuned_retrieve_read(catalog: ToolCatalog, base: str = SMOLLM2) -> ToolGenModel:
    """The base model with semantic codes over `catalog` (END and Finish added, nothing trained)."""
    model, tokenizer = load_base(base)
    return ToolGenModel.from_base(catalog, scheme="semantic", base=base, model=model, tokenizer=tokenizer)
