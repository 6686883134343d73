"""ToolGen retrieval: a query in, the constrained beam search's ranked tools out.

The retrieval prompt's opening (chat template and system prompt, the same for every query) is run through the
model once, when the retriever is made; each query then runs only its own tokens after those keys/values.

With a `lexical_weight` w > 0 the search starts from a lexical prior: each tool's first code token gets w times the
tool's BM25 score for the query, scaled to [0, 1] (`core.lexical.LexicalIndex.prior`), added to its log-probability;
a tool's score is then log P(code | query) + w * prior. The model still chooses among the constrained codes; the
prior lifts the tools whose documentation shares the query's rare words, which is where a tool token trained
without queries of its own is weakest (README, Evaluation → Retrieval).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .constraint import CodeTrie
from .decoding import DecodeResult, PromptPrefix, constrained_beam_search, constrained_beam_search_batch
from .lexical import LexicalIndex
from .model import ToolGenModel
from .prompts import retrieval_prompt, truncate_tokens

MAX_QUERY_TOKENS = 512
DEFAULT_LEXICAL_WEIGHT = 3.0  # toolgen+bm25's weight for a model that records none (best on BFCL's held-out queries)
TOOLGEN_SYSTEMS = ("toolgen", "toolgen+bm25")  # system names: the model alone, and with the lexical prior
BATCH_TOKENS = 1024  # padded prompt tokens per forward pass in retrieve_batch


class QueryError(ValueError):
    """A query that cannot be answered (empty, or naming no known tool pool)."""


@dataclass
class LexicalPrior:
    """BM25 scores of a query's tools, scaled to [0, 1] and times `weight`, placed on the tools' first code
    tokens: the first-step bias of the constrained search (a token shared by several codes takes their best)."""

    index: LexicalIndex
    first_tokens: torch.Tensor  # first code token of each catalog tool, in catalog order
    vocabulary: int
    weight: float

    @classmethod
    def of(cls, toolgen: ToolGenModel, weight: float) -> LexicalPrior:
        index = LexicalIndex(toolgen.catalog)
        first_tokens = torch.tensor([toolgen.code_ids(t)[0] for t in index.ids], dtype=torch.long)
        vocabulary = toolgen.model.get_output_embeddings().weight.shape[0]
        return cls(index, first_tokens, vocabulary, weight)

    def bias(self, queries: Sequence[str]) -> torch.Tensor:
        """(queries, vocabulary): the weighted prior on first code tokens, 0 elsewhere."""
        priors = torch.from_numpy(np.stack([self.index.prior(q) for q in queries])) * self.weight
        bias = torch.zeros(len(queries), self.vocabulary)
        return bias.scatter_reduce_(1, self.first_tokens.expand(len(queries), -1), priors, reduce="amax")


@dataclass
class Retrieved:
    """One ranked tool: its id, its code text, and log P(code | query) (plus the lexical prior, if any)."""

    tool_id: str
    code: str
    score: float


def lexical_weight_of(toolgen: ToolGenModel) -> float:
    """The lexical-prior weight recorded on the model (`python -m eval lexical-sweep --record`), else the default."""
    return float(toolgen.info.get("lexical_weight", DEFAULT_LEXICAL_WEIGHT))


class ToolGenRetriever:
    """Ranks tools for a query by constrained beam search over the model's tool codes.

    The prompt prefix's keys/values are computed here, from the model's weights as they are now: make the
    retriever after any change to them (training, `core.runtime.apply_precision`). `lexical_weight` > 0 adds the
    lexical prior (see the module docstring); the retriever is then named "toolgen+bm25"."""

    def __init__(self, toolgen: ToolGenModel, num_beams: int = 5, lexical_weight: float = 0.0):
        if not lexical_weight >= 0:
            raise ValueError(f"lexical_weight must be a number >= 0, got {lexical_weight}")
        self.toolgen, self.num_beams = toolgen, num_beams
        self.name = TOOLGEN_SYSTEMS[1] if lexical_weight else TOOLGEN_SYSTEMS[0]
        self.lexical = LexicalPrior.of(toolgen, lexical_weight) if lexical_weight else None
        self.trie = CodeTrie(toolgen.code_sequences())
        tokenizer = toolgen.tokenizer
        first, second = retrieval_prompt(tokenizer, "a"), retrieval_prompt(tokenizer, "b")
        shared = next((i for i, (x, y) in enumerate(zip(first, second)) if x != y), 0)
        self.prefix = PromptPrefix.of(toolgen.model, first[:shared]) if shared else None

    def _prefix_for(self, prompts: Sequence[Sequence[int]]) -> PromptPrefix | None:
        """The cached prefix when every prompt starts with it (a tokenizer could merge it into the query)."""
        return self.prefix if self.prefix is not None and all(self.prefix.starts(p) for p in prompts) else None

    def query_text(self, query: str) -> str:
        """`query` stripped and cut to MAX_QUERY_TOKENS tokens; empty queries raise."""
        text = query.strip()
        if not text:
            raise QueryError("the query is empty")
        return truncate_tokens(self.toolgen.tokenizer, text, MAX_QUERY_TOKENS)

    def prompt_ids(self, query: str) -> list[int]:
        """The retrieval prompt for `query` (see `query_text`)."""
        return retrieval_prompt(self.toolgen.tokenizer, self.query_text(query))

    def _bias(self, queries: Sequence[str]) -> torch.Tensor | None:
        return None if self.lexical is None else self.lexical.bias([self.query_text(q) for q in queries])

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
            first_step_bias=self._bias([query]),
        )

    def retrieve(self, query: str, k: int = 5, pool: Sequence[str] | None = None) -> list[tuple[str, float]]:
        """The top `k` (tool id, score) pairs for `query`, best first (score: log-prob, plus the lexical prior)."""
        prompt = self.prompt_ids(query)
        result = constrained_beam_search(
            self.toolgen.model,
            prompt,
            self.trie_for(pool),
            num_beams=self.num_beams,
            top_k=k,
            record_steps=False,
            prefix=self._prefix_for([prompt]),
            first_step_bias=self._bias([query]),
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
            bias = self._bias([queries[i] for i in batch])
            decoded = constrained_beam_search_batch(
                self.toolgen.model,
                [prompts[i] for i in batch],
                trie,
                num_beams=self.num_beams,
                top_k=k,
                record_steps=False,
                prefix=prefix,
                first_step_bias=bias,
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
