"""Schema-guided decoding of an Action Input: the model writes the values, the schema fixes the keys.

After ` {"` the next key is decoded under a trie of the tool's parameter names (each followed by `":`), so the
model cannot name a parameter the tool does not have; the value is then generated greedily until it is one
complete JSON value followed by `,` or `}`. A `}` while required parameters are missing becomes `,` and the next
key comes from the missing ones; a `,` with no parameter left closes the object. Keys are offered in the sorted
order agent tuning writes them (`core.prompts.format_arguments`), plus any missing required key. A tool without
parameters gets `{}`; one without required parameters gets `{}` when the model scores ` {}` above ` {"`.
The result always parses; a value that does not complete within the token budget is left out and reported.
With `typed=True` each value is decoded under its parameter's grammar (core/typed_values.py): an integer
parameter only gets an integer, a boolean true/false, an enum one of its values, a string a JSON string; a
value complete when the budget runs out is kept. Arrays, objects and untyped parameters stay free. `copy` (typed
only): a `CopyBias` toward spans of the user's request inside string values.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .constraint import CodeTrie
from .prompts import encode
from .typed_values import ANY_JSON, MISSING, CopyBias, Grammar, ValueConstraint, complete_value, value_grammar

NextLogits = Callable[[Sequence[int]], torch.Tensor]  # token ids -> next-token logits (1-D)
FINISH_SCHEMA = {"type": "object", "required": ["final_answer"], "properties": {"final_answer": {"type": "string"}}}


@dataclass
class DecodedArguments:
    """The arguments, the Action Input text the decoder wrote, and what went wrong (None when nothing did)."""

    arguments: dict
    text: str
    problem: str | None = None


def decode_arguments(
    next_logits: NextLogits,
    tokenizer,
    prompt: Sequence[int],
    schema: dict | None,
    max_tokens: int,
    stop_ids: frozenset[int] = frozenset(),
    typed: bool = False,
    copy: CopyBias | None = None,
) -> DecodedArguments:
    """Decode the JSON arguments that follow `prompt` (which ends with "Action Input:") under `schema`.

    `max_tokens` bounds the generated value tokens; `stop_ids` (end of turn) end a free value unfinished.
    `typed`: values follow their parameter's JSON-schema type (`core.typed_values.value_grammar`); `copy` then
    biases string values toward spans of the user's request."""
    specs = ((schema or {}).get("properties")) or {}
    properties = list(specs)
    required = [name for name in (schema or {}).get("required", []) if name in properties]
    opening, empty = encode(tokenizer, ' {"'), encode(tokenizer, " {}")
    if not properties or (
        not required and _log_prob(next_logits, prompt, empty) > _log_prob(next_logits, prompt, opening)
    ):
        return DecodedArguments({}, " {}")
    ids, arguments, budget, key_prefix = list(prompt) + opening, {}, max_tokens, ""
    candidates = _offered(properties, required, arguments)
    while True:
        options = {name: encode(tokenizer, f'{key_prefix}{name}":') for name in candidates}
        key = _choose(next_logits, ids, options)
        ids += options[key]
        grammar = value_grammar(specs[key]) if typed else ANY_JSON
        value, terminator, value_text, used = _value(next_logits, tokenizer, ids, budget, stop_ids, grammar, copy)
        budget -= used
        if value is MISSING:
            cut = _cut_string(value_text)
            if cut is not None:  # a string that ran out of tokens is kept as far as it got
                arguments[key] = cut
            why = f"the {max_tokens}-token limit" if budget <= 0 else "the end of the turn"
            return DecodedArguments(
                arguments,
                _arguments_text(arguments),
                f"the value of {key!r} was not a complete JSON value before {why}: "
                f"{value_text.strip()[:200]!r}" + (" (kept, cut there)" if cut is not None else ""),
            )
        arguments[key] = value
        ids += encode(tokenizer, value_text)
        candidates = _offered(properties, required, arguments)
        if not any(name not in arguments for name in required) and (terminator == "}" or not candidates):
            return DecodedArguments(arguments, _arguments_text(arguments))
        ids += encode(tokenizer, ",")
        key_prefix = ' "'


def _cut_string(text: str) -> str | None:
    """The content of an unterminated JSON string (`"abc` -> `abc`), or None when `text` is not one."""
    try:
        value = json.loads(text.strip().removesuffix("\\") + '"')
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, str) else None


def _offered(properties: list[str], required: list[str], arguments: dict) -> list[str]:
    """The keys the next position may hold: those after the last one in sorted order, and missing required ones."""
    last = max(arguments, default="")
    return [name for name in properties if name not in arguments and (name > last or name in required)]


def _arguments_text(arguments: dict) -> str:
    return " " + json.dumps(arguments, ensure_ascii=False)


def _choose(next_logits: NextLogits, ids: list[int], options: dict[str, list[int]]) -> str:
    """The option whose token ids the model follows greedily under a trie of all options."""
    if len(options) == 1:
        return next(iter(options))
    trie, prefix = CodeTrie(options), ()
    while True:
        logits = next_logits(ids + list(prefix))
        prefix += (int(trie.mask(logits[None], [prefix])[0].argmax()),)
        chosen = trie.tool_at(prefix)
        if chosen is not None:
            return chosen


def _log_prob(next_logits: NextLogits, ids: Sequence[int], continuation: Sequence[int]) -> float:
    """log P(continuation | ids), one cached step per token."""
    total = 0.0
    for position, token in enumerate(continuation):
        total += float(torch.log_softmax(next_logits(list(ids) + list(continuation[:position])), dim=-1)[token])
    return total


def _value(
    next_logits: NextLogits,
    tokenizer,
    ids: list[int],
    budget: int,
    stop_ids: frozenset[int],
    grammar: Grammar = ANY_JSON,
    copy: CopyBias | None = None,
) -> tuple[object, str, str, int]:
    """Greedy tokens until their text is a value of `grammar` followed by `,` or `}`:
    (value, terminator, value text, tokens used); value is MISSING when the budget or a stop token comes first.
    A typed grammar masks what it rejects (`ValueConstraint`), after `copy`'s bonus; a value it finds complete at
    the budget is kept."""
    constraint = None if grammar is ANY_JSON else ValueConstraint(grammar, tokenizer, stop_ids)
    new: list[int] = []
    while len(new) < budget:
        logits = next_logits(ids + new)
        if constraint is None:
            token = int(logits.argmax())
        else:
            token = constraint.choose(new, logits if copy is None else copy(tokenizer.decode(new), logits))
        if token is None or token in stop_ids:
            break
        new.append(token)
        found = complete_value(grammar, tokenizer.decode(new))
        if found is not None:
            return *found, len(new)
    text = tokenizer.decode(new)
    if constraint is not None and (value := grammar.parse(text)) is not MISSING:
        return value, "", text, len(new)
    return MISSING, "", text, len(new)
