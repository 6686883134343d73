"""BM25 over the tool catalog: the lexical scorer behind the BM25 baseline and ToolGen's lexical prior.

A tool is indexed as its `bm25_document` text, split by `tokenize`; Okapi BM25 (bm25s, Lucene variant) with
k1 = 1.5, b = 0.75. Every choice was tuned on the training queries (README, Evaluation → Retrieval).
`LexicalIndex.prior(query)` scales a query's scores to [0, 1] (divided by the best tool's score), the form in
which `core.retrieval.ToolGenRetriever` adds them to the model's log-probabilities.
"""

from __future__ import annotations

import re

import bm25s
import numpy as np
import Stemmer
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from .tools import ToolCatalog

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_WORD = re.compile(r"[a-z0-9]+")
STOP_WORDS = frozenset(ENGLISH_STOP_WORDS)
_STEM = Stemmer.Stemmer("english").stemWords


def tokenize(text: str) -> list[str]:
    """BM25 tokens: camelCase and acronym boundaries split (`getHTTPStatus` -> get http status), lowercased,
    runs of ASCII letters/digits kept (so `_`, `&`, `.` and spaces separate tokens), English stop words
    (scikit-learn's list) dropped, Snowball-stemmed."""
    words = _WORD.findall(_CAMEL_BOUNDARY.sub(" ", text).lower())
    return _STEM([word for word in words if word not in STOP_WORDS])


def bm25_document(tool) -> str:
    """The text BM25 indexes for a tool: tool name, API name, description and parameter names.
    Category, parameter types/descriptions and the memorization labels ("Tool Name:" ...) are left out:
    each lowered NDCG on the training queries (README, Evaluation)."""
    props = tool.parameters.get("properties", {}) if isinstance(tool.parameters, dict) else {}
    return " ".join([tool.tool_name, tool.api_name, tool.description, *props])


class LexicalIndex:
    """Okapi BM25 over each catalog tool's `bm25_document` text; scores come in catalog order (`ids`)."""

    def __init__(self, catalog: ToolCatalog, k1: float = 1.5, b: float = 0.75):
        if len(catalog) == 0:
            raise ValueError("cannot index an empty tool catalog")
        self.ids = catalog.ids
        self._bm25 = bm25s.BM25(k1=k1, b=b)
        self._bm25.index([tokenize(bm25_document(tool)) for tool in catalog], show_progress=False)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every catalog tool for `query`; words no tool has score nothing."""
        token_ids = self._bm25.get_tokens_ids(tokenize(query))
        if not token_ids:
            return np.zeros(len(self.ids), dtype=np.float32)
        return self._bm25.get_scores_from_ids(token_ids)

    def prior(self, query: str) -> np.ndarray:
        """`scores(query)` divided by the best score, in [0, 1] (all 0 when no word of the query matches)."""
        scores = np.asarray(self.scores(query), dtype=np.float32)
        best = float(scores.max())
        return scores / best if best > 0 else scores
