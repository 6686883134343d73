"""Typed argument values: the text a JSON-schema type allows, as small composable grammars, and the greedy choice
of a value's next token under one (used by core/arguments.py when the agent's `typed_arguments` is on).

A grammar reads the text of one value as the model writes it (one leading space allowed) and answers
`accepts(text)`: can the text still grow into a value of the type; and `parse(text)`: the value when the text
is a complete one, else MISSING. `value_grammar(schema)` picks a parameter's grammar: integers get integer
literals only, numbers JSON numbers, booleans `true`/`false`, enums their listed values, strings a JSON string
(free inside, opened by `"`); arrays, objects and untyped parameters any JSON value (`ANY_JSON`, unconstrained).
Digits are bounded, so a number always ends within a few tokens.

`ValueConstraint` is the logits processor of one value: the best-scoring token whose text keeps the value
acceptable, or completes it and closes it with `,` or `}` — the argmax of the logits with every other token
masked, found by checking tokens best first. Grammars with a fixed alphabet check only the few tokens made of it.
`CopyBias` is an optional processor before it: inside a string, a bonus for the tokens that keep the string's
content a span of the user's request (values copied from the request where they occur in it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Protocol

import torch

MISSING = object()  # `parse` of a text that is not a complete value
TERMINATORS = ",}"


class Grammar(Protocol):
    alphabet: frozenset[str] | None  # the only characters a value's text may hold (None: any)

    def accepts(self, text: str) -> bool:
        """`text` is the start (or the whole) of a value of this grammar."""

    def parse(self, text: str) -> object:
        """The value `text` writes, or MISSING when it is not a complete one."""


@dataclass(frozen=True)
class Pattern:
    """Values matched by regular expressions: `prefix` matches every start of a value, `whole` a complete one."""

    prefix: re.Pattern
    whole: re.Pattern
    alphabet: frozenset[str]

    def accepts(self, text: str) -> bool:
        return self.prefix.fullmatch(text) is not None

    def parse(self, text: str) -> object:
        return json.loads(text) if self.whole.fullmatch(text) else MISSING


@dataclass(frozen=True)
class Literals:
    """One of a few JSON values (an enum; true/false; null), written as compact JSON."""

    options: tuple

    @property
    def texts(self) -> tuple[str, ...]:
        return tuple(json.dumps(option, ensure_ascii=False) for option in self.options)

    @property
    def alphabet(self) -> frozenset[str]:
        return frozenset(" " + "".join(self.texts))

    def accepts(self, text: str) -> bool:
        text = text.removeprefix(" ")
        return any(option.startswith(text) for option in self.texts)

    def parse(self, text: str) -> object:
        text = text.removeprefix(" ")
        return next((o for o, t in zip(self.options, self.texts) if t == text), MISSING)


_STRING_BODY = r'(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*'


@dataclass(frozen=True)
class JsonString:
    """A JSON string: opened by `"`, any characters inside (escaped as JSON requires), closed by `"`."""

    alphabet = None
    _whole = re.compile(rf' ?"{_STRING_BODY}"')
    _open = re.compile(rf' ?(?:"{_STRING_BODY}(?:\\(?:u[0-9a-fA-F]{{0,3}})?)?)?')

    def accepts(self, text: str) -> bool:
        return self._open.fullmatch(text) is not None or self._whole.fullmatch(text) is not None

    def parse(self, text: str) -> object:
        return json.loads(text) if self._whole.fullmatch(text) else MISSING


@dataclass(frozen=True)
class AnyJson:
    """Any JSON value: accepts every text; complete when it parses (the untyped decoder's rule)."""

    alphabet = None

    def accepts(self, text: str) -> bool:
        return True

    def parse(self, text: str) -> object:
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return MISSING


@dataclass(frozen=True)
class OneOf:
    """A value of any of `grammars` (a schema with a list of types)."""

    grammars: tuple

    @property
    def alphabet(self) -> frozenset[str] | None:
        alphabets = [g.alphabet for g in self.grammars]
        return None if None in alphabets else frozenset().union(*alphabets)

    def accepts(self, text: str) -> bool:
        return any(g.accepts(text) for g in self.grammars)

    def parse(self, text: str) -> object:
        return next((v for v in (g.parse(text) for g in self.grammars) if v is not MISSING), MISSING)


_INT = r"-?(?:0|[1-9]\d{0,14})"  # at most 15 digits: a value always ends
INTEGER = Pattern(re.compile(rf" ?(?:-|{_INT})?"), re.compile(rf" ?{_INT}"), frozenset(" -0123456789"))
NUMBER = Pattern(
    re.compile(rf" ?(?:-|{_INT}(?:\.\d{{0,15}})?(?:(?<=\d)[eE][+-]?\d{{0,3}})?)?"),
    re.compile(rf" ?{_INT}(?:\.\d{{1,15}})?(?:[eE][+-]?\d{{1,3}})?"),
    frozenset(" -+.eE0123456789"),
)
BOOLEAN, NULL = Literals((True, False)), Literals((None,))
JSON_STRING, ANY_JSON = JsonString(), AnyJson()
_BY_TYPE = {"integer": INTEGER, "number": NUMBER, "boolean": BOOLEAN, "null": NULL, "string": JSON_STRING}


def value_grammar(schema: object) -> Grammar:
    """The grammar of a parameter's JSON schema: its enum's values, else its type(s); ANY_JSON for arrays,
    objects and schemas without a type."""
    if not isinstance(schema, dict):
        return ANY_JSON
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return Literals(tuple(schema["enum"]))
    kinds = schema.get("type")
    grammars = [_BY_TYPE.get(kind) for kind in (kinds if isinstance(kinds, list) else [kinds])]
    if not grammars or None in grammars:
        return ANY_JSON
    return grammars[0] if len(grammars) == 1 else OneOf(tuple(grammars))


def complete_value(grammar: Grammar, text: str) -> tuple[object, str, str] | None:
    """`(value, terminator, value text)` when `text` starts with a complete value followed by `,` or `}`."""
    for position, char in enumerate(text):
        if char in TERMINATORS:
            value = grammar.parse(text[:position])
            if value is not MISSING:
                return value, char, text[:position]
    return None


@cache
def _pieces(tokenizer) -> tuple[str, ...]:
    """The text of every token id on its own."""
    return tuple(tokenizer.batch_decode([[i] for i in range(len(tokenizer))]))


@cache
def _candidates(tokenizer, alphabet: frozenset[str]) -> torch.Tensor:
    """Ids of the tokens whose text, up to a first `,` or `}`, uses only `alphabet`."""
    ok = [
        i
        for i, piece in enumerate(_pieces(tokenizer))
        if piece and all(c in alphabet for c in re.split(r"[,}]", piece, maxsplit=1)[0])
    ]
    return torch.tensor(ok, dtype=torch.long)


def _excluded(tokenizer, stop_ids: frozenset[int]) -> frozenset[int]:
    """Tokens no value may hold: special and added ones (tool codes, <<Finish>>) and the stop tokens."""
    added = range(tokenizer.vocab_size, len(tokenizer))
    return frozenset(tokenizer.all_special_ids) | frozenset(added) | stop_ids


class ValueConstraint:
    """Greedy decoding of one value under `grammar`: `choose(new, logits)` is the best-scoring token after the
    value's tokens `new` whose text keeps the value acceptable (or completes and closes it); None if none does.
    Special, added and stop tokens are never chosen."""

    def __init__(self, grammar: Grammar, tokenizer, stop_ids: frozenset[int] = frozenset()):
        self.grammar, self.tokenizer = grammar, tokenizer
        self.candidates = None if grammar.alphabet is None else _candidates(tokenizer, grammar.alphabet)
        self.excluded = _excluded(tokenizer, stop_ids)

    def acceptable(self, text: str) -> bool:
        """The grammar accepts `text`, or `text` is a complete value closed by `,` or `}`."""
        return self.grammar.accepts(text) or complete_value(self.grammar, text) is not None

    def choose(self, new: Sequence[int], logits: torch.Tensor) -> int | None:
        ids = torch.arange(len(logits)) if self.candidates is None else self.candidates
        ids = ids[ids < len(logits)]
        for token in ids[logits[ids].argsort(descending=True, stable=True)].tolist():
            if token not in self.excluded and self.acceptable(self.tokenizer.decode([*new, token])):
                return token
        return None


class CopyBias:
    """Adds `bonus` to the logits of the tokens that keep an open JSON string's content a span of `source` (the
    user's request), so string values are copied from the request where they occur in it; a copied span that
    cannot grow further gets the bonus on the tokens that close the string. Elsewhere no change."""

    def __init__(self, tokenizer, source: str, bonus: float):
        self.source, self.bonus = source, bonus
        pieces = _pieces(tokenizer)
        self.pieces = [(i, piece) for i, piece in enumerate(pieces) if piece and piece in source]
        self.closers = [i for i, piece in enumerate(pieces) if piece.startswith('"')]

    def __call__(self, text: str, logits: torch.Tensor) -> torch.Tensor:
        """`logits` for the token after the value text `text`, with the bonus where it applies."""
        opened = text.removeprefix(" ")
        if not opened.startswith('"') or JSON_STRING.parse(text) is not MISSING:
            return logits  # not inside an open string
        content = opened[1:]
        ids = [i for i, piece in self.pieces if content + piece in self.source]
        if not ids and content and content in self.source:
            ids = self.closers
        ids = [i for i in ids if i < len(logits)]
        if not ids:
            return logits
        biased = logits.clone()
        biased[ids] += self.bonus
        return biased
