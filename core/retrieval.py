"""ToolGen retrieval: a query in, the constrained beam search's ranked tools out."""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from .constraint import CodeTrie
from .decoding import DecodeResult, constrained_beam_search, constrained_beam_search_batch
from .model import ToolGenModel
from .prompts import retrieval_prompt, truncate_tokens

MAX_QUERY_TOKENS = 512


class QueryError(ValueError):
    """A query that cannot be answered (empty, or naming no known tool pool)."""


@dataclass
class Retrieved:
    """One ranked tool: its id, its code text, and log P(code | query)."""

    tool_id: str
    code: str
    score: float


class ToolGenRetriever:
    """Ranks tools for a query by constrained beam search over the model's tool codes."""

    name = "toolgen"

    def __init__(self, toolgen: ToolGenModel, num_beams: int = 5):
        self.toolgen, self.num_beams = toolgen, num_beams
        self.trie = CodeTrie(toolgen.code_sequences())

    def prompt_ids(self, query: str) -> list[int]:
        """The retrieval prompt for `query`, its text cut to MAX_QUERY_TOKENS tokens; empty queries raise."""
        text = query.strip()
        if not text:
            raise QueryError("the query is empty")
        tokenizer = self.toolgen.tokenizer
        return retrieval_prompt(tokenizer, truncate_tokens(tokenizer, text, MAX_QUERY_TOKENS))

    def trie_for(self, pool: Sequence[str] | None) -> CodeTrie:
        """The full code trie, or the sub-trie of the tools in `pool` (unknown ids raise QueryError)."""
        if pool is None:
            return self.trie
        unknown = [tool_id for tool_id in pool if tool_id not in self.trie]
        if unknown:
            raise QueryError(f"unknown tool(s) in pool: {unknown[:3]}")
        if not pool:
            raise QueryError("the tool pool is empty")
        return self.trie.restrict(pool)

    def inspect(self, query: str, k: int = 5, pool: Sequence[str] | None = None,
                num_beams: int | None = None, step_top_n: int = 10) -> DecodeResult:
        """The full beam search result for `query`, with per-step traces (for the beam inspector)."""
        return constrained_beam_search(self.toolgen.model, self.prompt_ids(query), self.trie_for(pool),
                                       num_beams=num_beams or self.num_beams, top_k=k,
                                       tokenizer=self.toolgen.tokenizer, step_top_n=step_top_n)

    def retrieve(self, query: str, k: int = 5, pool: Sequence[str] | None = None) -> list[tuple[str, float]]:
        """The top `k` (tool id, log-prob) pairs for `query`, best first."""
        result = constrained_beam_search(self.toolgen.model, self.prompt_ids(query), self.trie_for(pool),
                                         num_beams=self.num_beams, top_k=k, record_steps=False)
        return [(c.tool_id, c.log_prob) for c in result.candidates]

    def retrieve_batch(self, queries: Sequence[str], k: int = 5,
                       pool: Sequence[str] | None = None) -> list[list[tuple[str, float]]]:
        """`retrieve` for several queries sharing one pool, decoded as one batch."""
        results = constrained_beam_search_batch(self.toolgen.model, [self.prompt_ids(q) for q in queries],
                                                self.trie_for(pool), num_beams=self.num_beams, top_k=k,
                                                record_steps=False)
        return [[(c.tool_id, c.log_prob) for c in r.candidates] for r in results]

    def ranked(self, query: str, k: int = 5, pool: Sequence[str] | None = None) -> tuple[list[Retrieved], float]:
        """Ranked tools with their code texts, and the latency in milliseconds."""
        start = time.perf_counter()
        hits = self.retrieve(query, k, pool)
        latency_ms = (time.perf_counter() - start) * 1000
        return [Retrieved(t, self.toolgen.indexing.code(t), s) for t, s in hits], latency_ms
