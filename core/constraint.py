"""Constrained decoding support: a trie over the token ids of every allowed tool code, and a masking step.

`CodeTrie` answers "which tokens may come next after this prefix?" and "which tool does this sequence
name?". `CodeTrie.mask` sets every other token's score to -inf; `ToolConstraintLogitsProcessor` wraps it
as a transformers `LogitsProcessor` for `model.generate` (beam search or sampling), forcing an end token
once a code is complete. No code may be a prefix of another (multi-token schemes end codes with END).

Speed: next-token sets are built lazily per node and cached as id tensors; a node with many children
(the root of an atomic trie holds ~47k) also caches an additive mask row (0 where allowed, -inf elsewhere),
so masking it is one vector add instead of a 47k-element gather/scatter.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping, Sequence

import torch
from transformers import LogitsProcessor

NEG_INF = float("-inf")


class CodeTrie:
    """A prefix trie over token-id sequences, one sequence (code) per tool id."""

    DENSE_MIN_CHILDREN = 1024  # nodes with at least this many children cache a dense additive mask row

    def __init__(self, codes: Mapping[str, Sequence[int]]):
        self._codes: dict[str, tuple[int, ...]] = {}
        self._children: list[dict[int, int]] = [{}]  # node index -> {token id: child node index}
        self._tool: list[str | None] = [None]  # node index -> tool id whose code ends there
        for tool_id, code in codes.items():
            self._insert(tool_id, code)
        self.max_token_id = max((t for code in self._codes.values() for t in code), default=-1)
        self.depth = max((len(code) for code in self._codes.values()), default=0)
        self._allowed_cache: dict[tuple[int, torch.device], torch.Tensor] = {}
        self._dense_cache: dict[tuple[int, int, torch.dtype, torch.device], torch.Tensor] = {}

    def _insert(self, tool_id: str, code: Sequence[int]) -> None:
        try:
            code = tuple(operator.index(t) for t in code)
        except TypeError:
            raise ValueError(f"tool {tool_id!r}: code {tuple(code)} must hold integer token ids") from None
        if not code:
            raise ValueError(f"tool {tool_id!r}: empty code")
        if min(code) < 0:
            raise ValueError(f"tool {tool_id!r}: code {code} holds a negative token id")
        node = 0
        for position, token in enumerate(code):
            if self._tool[node] is not None:
                raise ValueError(
                    f"code {code} of tool {tool_id!r} extends the code {code[:position]} "
                    f"of tool {self._tool[node]!r}: no code may be a prefix of another"
                )
            child = self._children[node].get(token)
            if child is None:
                child = len(self._children)
                self._children[node][token] = child
                self._children.append({})
                self._tool.append(None)
            node = child
        if self._tool[node] is not None:
            raise ValueError(f"tools {self._tool[node]!r} and {tool_id!r} share the code {code}")
        if self._children[node]:
            longer = next(t for t, c in self._codes.items() if c[: len(code)] == code)
            raise ValueError(
                f"code {code} of tool {tool_id!r} is a prefix of the code {self._codes[longer]} "
                f"of tool {longer!r}: no code may be a prefix of another"
            )
        self._tool[node] = tool_id
        self._codes[tool_id] = code

    @property
    def codes(self) -> dict[str, tuple[int, ...]]:
        """Tool id -> code token ids (a copy)."""
        return dict(self._codes)

    def __len__(self) -> int:
        return len(self._codes)

    def __contains__(self, tool_id: object) -> bool:
        return tool_id in self._codes

    def _node(self, prefix: Sequence[int]) -> int | None:
        node = 0
        for token in prefix:
            node = self._children[node].get(token)
            if node is None:
                return None
        return node

    def allowed(self, prefix: Sequence[int] = ()) -> torch.LongTensor:
        """Sorted token ids that may follow `prefix` (empty once the code is complete).

        Raises KeyError if `prefix` does not begin any code.
        """
        node = self._node(prefix)
        if node is None:
            raise KeyError(f"token prefix {tuple(prefix)} does not begin any code of this trie")
        return self._allowed_ids(node, torch.device("cpu"))

    def _allowed_ids(self, node: int, device: torch.device) -> torch.Tensor:
        key = (node, device)
        ids = self._allowed_cache.get(key)
        if ids is None:
            ids = torch.tensor(sorted(self._children[node]), dtype=torch.long, device=device)
            self._allowed_cache[key] = ids
        return ids

    def _is_wide(self, node: int) -> bool:
        return len(self._children[node]) >= self.DENSE_MIN_CHILDREN

    def _dense_mask(self, node: int, like: torch.Tensor) -> torch.Tensor:
        key = (node, like.shape[-1], like.dtype, like.device)
        row = self._dense_cache.get(key)
        if row is None:
            row = torch.full((like.shape[-1],), NEG_INF, dtype=like.dtype, device=like.device)
            row[self._allowed_ids(node, like.device)] = 0
            self._dense_cache[key] = row
        return row

    def tool_at(self, sequence: Sequence[int]) -> str | None:
        """The tool whose code is exactly `sequence`, or None."""
        node = self._node(sequence)
        return None if node is None else self._tool[node]

    def leading_code(self, sequence: Sequence[int]) -> tuple[str, int] | None:
        """(tool id, code length) of the complete code that `sequence` starts with, or None."""
        node = 0
        for position, token in enumerate(sequence):
            node = self._children[node].get(token)
            if node is None:
                return None
            if self._tool[node] is not None:
                return self._tool[node], position + 1
        return None

    def restrict(self, tool_ids: Iterable[str]) -> CodeTrie:
        """A trie holding only the codes of `tool_ids` (e.g. a query's candidate pool)."""
        wanted = list(dict.fromkeys(tool_ids))
        missing = [t for t in wanted if t not in self._codes]
        if missing:
            raise KeyError(f"{len(missing)} tool id(s) not in this trie, e.g. {missing[:5]}")
        return CodeTrie({t: self._codes[t] for t in wanted})

    def mask(self, scores: torch.Tensor, prefixes: Sequence[Sequence[int]]) -> torch.Tensor:
        """A copy of `scores` (rows x vocab) where row i keeps only the tokens allowed after `prefixes[i]`.

        Every other entry is -inf; a row whose prefix is complete or leaves the trie is all -inf.
        """
        if scores.dim() != 2 or scores.shape[0] != len(prefixes):
            raise ValueError(f"scores of shape {tuple(scores.shape)} do not match {len(prefixes)} prefixes")
        if self.max_token_id >= scores.shape[1]:
            raise ValueError(
                f"the trie holds token id {self.max_token_id} but scores have only {scores.shape[1]} "
                "columns: were the tool tokens added to the tokenizer and the embeddings resized?"
            )
        rows_by_node: dict[int, list[int]] = {}
        for row, prefix in enumerate(prefixes):
            node = self._node(prefix)
            if node is not None and self._children[node]:
                rows_by_node.setdefault(node, []).append(row)
        if len(rows_by_node) == 1:
            ((node, rows),) = rows_by_node.items()
            if len(rows) == len(prefixes) and self._is_wide(node):
                return scores + self._dense_mask(node, scores)  # every row at one wide node: one broadcast add
        masked = torch.full_like(scores, NEG_INF)
        for node, rows in rows_by_node.items():
            index = torch.tensor(rows, device=scores.device)
            if self._is_wide(node):
                masked[index] = scores[index] + self._dense_mask(node, scores)
            else:
                ids = self._allowed_ids(node, scores.device)
                masked[index[:, None], ids] = scores[index[:, None], ids]
        return masked


class ToolConstraintLogitsProcessor(LogitsProcessor):
    """Lets `generate` emit only codes of `trie` after the first `prompt_length` tokens, then `end_token_id`.

    Rows still inside a code keep only the trie's next tokens; rows that completed a code get
    `end_token_id` forced with score 0 (log 1, so forcing does not change a beam's score); rows that left
    the trie (dead beams with -inf score that beam search keeps as fillers) stay all -inf.
    With left-padded batches `prompt_length` is the padded input length, `input_ids.shape[1]` at the start.
    """

    def __init__(self, trie: CodeTrie, prompt_length: int, end_token_id: int):
        if len(trie) == 0:
            raise ValueError("the code trie holds no codes: nothing can be generated")
        self.trie = trie
        self.prompt_length = prompt_length
        self.end_token_id = end_token_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[1] < self.prompt_length:
            raise ValueError(f"input of length {input_ids.shape[1]} is shorter than prompt_length {self.prompt_length}")
        prefixes = [tuple(row) for row in input_ids[:, self.prompt_length :].tolist()]
        masked = self.trie.mask(scores, prefixes)
        complete = [row for row, prefix in enumerate(prefixes) if self.trie.leading_code(prefix) is not None]
        if complete:
            masked[complete] = NEG_INF
            masked[complete, self.end_token_id] = 0.0
        return masked
