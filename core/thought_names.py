"""Thoughts that name a tool of the pool: the opening of a thought decoded under a constraint, like the action.

Agent tuning writes every thought as "I should use {function name} to {task}." (a call) or "I have what I need to
answer." (Finish) (`core.examples.call_thought`), and the action that follows names the same tool. Decoded freely,
the thought can name a function that is not offered, or a wrong one ("I should use get_current_user_info …" for
"List the files in my home folder."), and the constrained action, conditioned on that text, follows it to a wrong
tool. `ThoughtOpenings` holds every opening a trained thought can have for the pool, "Thought: I should use
{name}" followed by " to" or ".", and the Finish thought, as the codes of a `CodeTrie`: the agent decodes the
opening by constrained beam search (`AgentConfig.named_thoughts`), writes the rest of the thought freely, and then
chooses the action among the tools of that name only (Finish only after the Finish thought).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .bfcl import function_name
from .constraint import CodeTrie
from .examples import FINISH_THOUGHT
from .indexing import FINISH
from .model import ToolGenModel
from .prompts import THOUGHT, encode

NAME_ENDS = (" to", ".")  # what follows the name in a trained thought: " to {task}." or "." (no description)


@dataclass(frozen=True)
class ThoughtOpenings:
    """The thought openings of a tool pool as trie codes, and the tools each opening names (Finish: none)."""

    trie: CodeTrie
    named: dict[str, tuple[str, ...]]

    @classmethod
    def of(cls, toolgen: ToolGenModel, tool_ids: Iterable[str]) -> ThoughtOpenings:
        """Openings for the tools `tool_ids` (Finish among them is ignored: its thought is always offered).

        An opening that is a token prefix of another (a function `math` beside `math.factorial`) is left out,
        as a trie cannot hold both; its tools stay reachable through the other ending."""
        by_name: dict[str, list[str]] = {}
        for tool_id in tool_ids:
            if tool_id != FINISH:
                by_name.setdefault(function_name(toolgen.catalog[tool_id]), []).append(tool_id)
        tokenizer = toolgen.tokenizer
        codes = {FINISH: tuple(encode(tokenizer, THOUGHT + FINISH_THOUGHT))}
        named: dict[str, tuple[str, ...]] = {FINISH: ()}
        for name, tools in by_name.items():
            for end in NAME_ENDS:
                codes[name + end] = tuple(encode(tokenizer, f"{THOUGHT}I should use {name}{end}"))
                named[name + end] = tuple(tools)
        ordered = sorted(codes.items(), key=lambda item: item[1])
        # in sorted order, a code that prefixes any other prefixes the one right after it
        kept = {key: code for (key, code), (_, after) in zip(ordered, ordered[1:]) if after[: len(code)] != code}
        kept[ordered[-1][0]] = ordered[-1][1]
        return cls(CodeTrie(kept), {key: named[key] for key in kept})

    def action_trie(self, pool: CodeTrie, opening: str) -> CodeTrie:
        """The codes the action may take after `opening`: the tools it names, or Finish after the Finish thought."""
        return pool.restrict(self.named[opening] or (FINISH,))
