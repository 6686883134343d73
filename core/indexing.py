"""Tool indexing: how a tool is written as tokens (ToolGen paper, section on indexing ablations).

Every scheme maps each tool id to a *code*: a text whose tokenization, after `new_tokens()` are added to
the tokenizer, is the token sequence the model emits for that tool.

- atomic:       one new token per tool, official format `<<tool_name&&api_name>>` (the ToolGen default).
- semantic:     the tool's own name in ordinary tokens, then the END token.
- numeric:      a zero-padded tool number in ordinary digit tokens, then END.
- hierarchical: the path of the tool in a deterministic k-means tree over its documentation, as digit
                tokens, then END.

Multi-token codes end with the special END token so that no code is a prefix of another.
Names are kept verbatim, as in the published ToolGen vocabulary (which keeps non-ASCII such as emoji).
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections import Counter

import numpy as np

from .tools import Tool, ToolCatalog

END = "<<end>>"
FINISH = "<<Finish>>"  # the Finish action: its token, and its pseudo tool id wherever tool ids go
_TOKEN_RE = re.compile(r"^<<(.+?)&&(.+)>>$", re.DOTALL)


def tool_token(tool_name: str, api_name: str) -> str:
    """The official ToolGen token for an API: `<<tool_name&&api_name>>`."""
    return f"<<{tool_name}&&{api_name}>>"


def parse_tool_token(token: str) -> tuple[str, str]:
    """Split `<<tool_name&&api_name>>` into its names; raise ValueError on anything else."""
    match = _TOKEN_RE.match(token)
    if not match:
        raise ValueError(f"not a tool token: {token!r}")
    return match.group(1), match.group(2)


class Indexing(ABC):
    """Maps tools to code texts. Build with a catalog, or restore from `to_dict()` output."""

    scheme: str = ""

    def __init__(self, codes: dict[str, str]):
        self.codes = dict(codes)
        by_code: dict[str, str] = {}
        for tool_id, code in self.codes.items():
            if code in by_code:
                raise ValueError(f"{self.scheme} indexing: tools {by_code[code]!r} and {tool_id!r} share code {code!r}")
            by_code[code] = tool_id
        self._tool_by_code = by_code

    @classmethod
    @abstractmethod
    def build(cls, catalog: ToolCatalog) -> Indexing:
        """Assign a code to every tool of `catalog`."""

    def code(self, tool_id: str) -> str:
        return self.codes[tool_id]

    def tool_for_code(self, code: str) -> str | None:
        """The tool id whose code is `code`, or None."""
        return self._tool_by_code.get(code)

    @abstractmethod
    def new_tokens(self) -> list[str]:
        """Tokens this scheme adds to the vocabulary, in a deterministic order."""

    def to_dict(self) -> dict:
        return {"scheme": self.scheme, "codes": self.codes}

    def __len__(self) -> int:
        return len(self.codes)


class AtomicIndexing(Indexing):
    """One new token per tool: `<<tool_name&&api_name>>`."""

    scheme = "atomic"

    @classmethod
    def build(cls, catalog: ToolCatalog) -> AtomicIndexing:
        return cls({t.id: tool_token(t.tool_name, t.api_name) for t in catalog})

    def new_tokens(self) -> list[str]:
        return list(self.codes.values())


class _EndTerminated(Indexing):
    """Codes in ordinary tokens closed by the END token."""

    def new_tokens(self) -> list[str]:
        return [END]


class SemanticIndexing(_EndTerminated):
    """The tool's name in ordinary tokens: `tool_name: api_name<<end>>`."""

    scheme = "semantic"

    @classmethod
    def build(cls, catalog: ToolCatalog) -> SemanticIndexing:
        return cls({t.id: f"{t.tool_name}: {t.api_name}{END}" for t in catalog})


class NumericIndexing(_EndTerminated):
    """A unique zero-padded number per tool in ordinary digit tokens: `0042<<end>>`."""

    scheme = "numeric"

    @classmethod
    def build(cls, catalog: ToolCatalog) -> NumericIndexing:
        width = max(1, len(str(max(len(catalog) - 1, 0))))
        return cls({t.id: f"{i:0{width}d}{END}" for i, t in enumerate(catalog)})


class HierarchicalIndexing(_EndTerminated):
    """The tool's path in a k-means tree (branching `BRANCHES`) over bag-of-words documentation vectors."""

    scheme = "hierarchical"
    BRANCHES = 10

    @classmethod
    def build(cls, catalog: ToolCatalog, seed: int = 0) -> HierarchicalIndexing:
        tools = list(catalog)
        vectors = _bag_of_words([_doc_words(t) for t in tools])
        paths: dict[str, list[int]] = {}
        _split(list(range(len(tools))), vectors, [], paths, tools, np.random.default_rng(seed), cls.BRANCHES)
        return cls({tool_id: "".join(map(str, path)) + END for tool_id, path in paths.items()})


SCHEMES: dict[str, type[Indexing]] = {
    s.scheme: s for s in (AtomicIndexing, SemanticIndexing, NumericIndexing, HierarchicalIndexing)
}


def build_indexing(scheme: str, catalog: ToolCatalog) -> Indexing:
    """Build the named indexing scheme over `catalog`."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown indexing scheme {scheme!r}; choose from {sorted(SCHEMES)}")
    return SCHEMES[scheme].build(catalog)


def indexing_from_dict(data: dict) -> Indexing:
    """Restore an indexing saved with `to_dict()`."""
    scheme = data.get("scheme")
    if scheme not in SCHEMES:
        raise ValueError(f"unknown indexing scheme {scheme!r}")
    return SCHEMES[scheme](data["codes"])


def _doc_words(tool: Tool) -> list[str]:
    return re.findall(r"[a-z0-9]+", f"{tool.category} {tool.tool_name} {tool.api_name} {tool.description}".lower())


def _bag_of_words(docs: list[list[str]]) -> np.ndarray:
    """L2-normalised TF-IDF vectors over the (at most 4,096) most frequent words."""
    df = Counter(w for doc in docs for w in set(doc))
    vocab = {w: i for i, (w, _) in enumerate(df.most_common(4096))}
    matrix = np.zeros((len(docs), max(len(vocab), 1)), dtype=np.float32)
    for row, doc in enumerate(docs):
        for word, count in Counter(doc).items():
            if word in vocab:
                matrix[row, vocab[word]] = count * math.log(1 + len(docs) / df[word])
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-8)


def _split(members, vectors, prefix, paths, tools, rng, branches) -> None:
    """Recursively cluster `members` until every leaf holds at most `branches` tools."""
    if len(members) <= branches:
        for position, m in enumerate(members):
            paths[tools[m].id] = prefix + [position]
        return
    labels = _kmeans(vectors[members], branches, rng)
    if len(set(labels)) == 1:  # identical documents: split evenly by position
        labels = [i * branches // len(members) for i in range(len(members))]
    for cluster in range(branches):
        chosen = [m for m, label in zip(members, labels) if label == cluster]
        if chosen:
            _split(chosen, vectors, prefix + [cluster], paths, tools, rng, branches)


def _kmeans(points: np.ndarray, k: int, rng, iterations: int = 20) -> list[int]:
    centers = points[rng.choice(len(points), size=k, replace=False)]
    labels = np.zeros(len(points), dtype=int)
    for _ in range(iterations):
        labels = np.argmax(points @ centers.T, axis=1)
        for c in range(k):
            chosen = points[labels == c]
            if len(chosen):
                centers[c] = chosen.mean(axis=0)
    return labels.tolist()
