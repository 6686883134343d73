"""ToolGen retrieval: a query in, the constrained beam search's ranked tools out.

The retrieval prompt's opening (chat template and system prompt, the same for every query) is run through the
model once, when the retriever is made; each query then runs only its own tokens after those keys/values.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from .constraint import CodeTrie
from .decoding import DecodeResult, PromptPrefix, constrained_beam_search, constrained_beam_search_batch
from .model import ToolGenModel
from .prompts import retrieval_prompt, truncate_tokens

MAX_QUERY_TOKENS = 512
BATCH_TOKENS = 1024  # padded prompt tokens per forward pass in retrieve_batch


class QueryError(ValueError):
    """A query that cannot be answered (empty, or naming no known tool pool)."""


@dataclass
class Retrieved:
    """One ranked tool: its id, its code text, and log P(code | query)."""

    tool_id: str
    code: str
    score: float


class ToolGenRetriever:
    """Ranks tools for a query by constrained beam search over the model's tool codes.

    The prompt prefix's keys/values are computed here, from the model's weights as they are now: make the
    retriever after any change to them (training, `core.runtime.apply_precision`)."""

    name = "toolgen"

    def __init__(self, toolgen: ToolGenModel, num_beams: int = 5):
        self.toolgen, self.num_beams = toolgen, num_beams
        self.trie = CodeTrie(toolgen.code_sequences())
        tokenizer = toolgen.tokenizer
        first, second = retrieval_prompt(tokenizer, "a"), retrieval_prompt(tokenizer, "b")
        shared = next((i for i, (x, y) in enumerate(zip(first, second)) if x != y), 0)
        self.prefix = PromptPrefix.of(toolgen.model, first[:shared]) if shared else None

    def _prefix_for(self, prompts: Sequence[Sequence[int]]) -> PromptPrefix | None:
        """The cached prefix when every prompt starts with it (a tokenizer could merge it into the query)."""
        return self.prefix if self.prefix is not None and all(self.prefix.starts(p) for p in prompts) else None

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

    def inspect(
        self,
        query: str,
        k: int = 5,
        pool: Sequence[str] | None = None,
        num_beams: int | None = None,
        step_top_n: int = 10,
    ) -> DecodeResult:
        """The full beam search result for `query`, with per-step traces (for the beam inspector)."""
        prompt = self.prompt_ids(query)
        return constrained_beam_search(
            self.toolgen.model,
            prompt,
            self.trie_for(pool),
            num_beams=num_beams or self.num_beams,
            top_k=k,
            tokenizer=self.toolgen.tokenizer,
            step_top_n=step_top_n,
            prefix=self._prefix_for([prompt]),
        )

    def retrieve(self, query: str, k: int = 5, pool: Sequence[str] | None = None) -> list[tuple[str, float]]:
        """The top `k` (tool id, log-prob) pairs for `query`, best first."""
        prompt = self.prompt_ids(query)
        result = constrained_beam_search(
            self.toolgen.model,
            prompt,
            self.trie_for(pool),
            num_beams=self.num_beams,
            top_k=k,
            record_steps=False,
            prefix=self._prefix_for([prompt]),
        )
        return [(c.tool_id, c.log_prob) for c in result.candidates]

    def retrieve_batch(
        self, queries: Sequence[str], k: int = 5, pool: Sequence[str] | None = None, batch_tokens: int = BATCH_TOKENS
    ) -> list[list[tuple[str, float]]]:
        """`retrieve` for several queries sharing one pool. Queries are decoded in batches of similar length (at
        most `batch_tokens` padded prompt tokens each), so short queries are not padded to the longest one."""
        prompts = [self.prompt_ids(q) for q in queries]
        trie, prefix = self.trie_for(pool), self._prefix_for(prompts)
        results: list = [None] * len(prompts)
        for batch in _length_batches([len(p) for p in prompts], batch_tokens):
            decoded = constrained_beam_search_batch(
                self.toolgen.model,
                [prompts[i] for i in batch],
                trie,
                num_beams=self.num_beams,
                top_k=k,
                record_steps=False,
                prefix=prefix,
            )
            for i, result in zip(batch, decoded):
                results[i] = [(c.tool_id, c.log_prob) for c in result.candidates]
        return results

    def ranked(self, query: str, k: int = 5, pool: Sequence[str] | None = None) -> tuple[list[Retrieved], float]:
        """Ranked tools with their code texts, and the latency in milliseconds."""
        start = time.perf_counter()
        hits = self.retrieve(query, k, pool)
        latency_ms = (time.perf_counter() - start) * 1000
        return [Retrieved(t, self.toolgen.indexing.code(t), s) for t, s in hits], latency_ms


def _length_batches(lengths: Sequence[int], batch_tokens: int) -> list[list[int]]:
    """Indices of `lengths` sorted by length and cut into runs whose padded size (count x longest) stays
    within `batch_tokens` (a longer single prompt is a batch of its own)."""
    batches: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        if batches and (len(batches[-1]) + 1) * lengths[i] <= batch_tokens:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches
